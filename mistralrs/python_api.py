"""The seed's in-process Python API: `Runner(which=Which.GGUF(...))` over the same engine the server uses."""
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from .runtime.outputs import ChoiceDelta, RequestDone, RequestError
from .runtime.request import GenerationRequest, SamplingParams, StoppingCriteria


class Which:
    """Where the model comes from (mistral.rs's names; `Artifact` is ours: a compiled artifact directory)."""

    @dataclass
    class Plain:
        model_id: str
        arch: str | None = None

    @dataclass
    class GGUF:
        quantized_model_id: str
        quantized_filename: str | None = None
        tok_model_id: str | None = None

    @dataclass
    class Artifact:
        path: str


@dataclass(kw_only=True)
class _SamplingFields:
    model: str = "default"
    max_tokens: int | None = None
    n_choices: int = 1
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[int, float] | None = None
    stop_seqs: list[str] | None = None
    seed: int | None = None


@dataclass(kw_only=True)
class ChatCompletionRequest(_SamplingFields):
    messages: list[dict] | str
    logprobs: bool = False
    top_logprobs: int | None = None
    tools: list[dict] | None = None
    enable_thinking: bool | None = None
    stream: bool = False


@dataclass(kw_only=True)
class CompletionRequest(_SamplingFields):
    prompt: str
    echo_prompt: bool = False


class Runner:
    """Compiles (through the artifact cache) and loads the model, then answers requests in-process."""

    def __init__(self, which, in_situ_quant: str | None = None, max_seqs: int = 16, threads: int | None = None,
                 **_ignored):
        from .runtime.artifact import open_artifact
        from .runtime.engine import Engine, EngineConfig

        config = EngineConfig(max_batch=max_seqs) if threads is None else EngineConfig(max_batch=max_seqs, threads=threads)
        self.engine = Engine(open_artifact(_artifact_path(which, in_situ_quant)), config)

    def send_chat_completion_request(self, request: ChatCompletionRequest):
        messages = [{"role": "user", "content": request.messages}] if isinstance(request.messages, str) else request.messages
        kwargs = {} if request.enable_thinking is None else {"enable_thinking": request.enable_thinking}
        prompt = self.engine.tokenizer.apply_chat_template(messages, tools=request.tools, **kwargs)
        ids = self.engine.tokenizer.encode(prompt, add_special_tokens=False)
        events = self._events(ids, request, logprobs=request.logprobs, top_logprobs=request.top_logprobs or 0)
        if request.stream:
            return (_namespace(_chunk(e)) for e in events if isinstance(e, ChoiceDelta))
        choices, usage = _collect(events)
        return _namespace({"object": "chat.completion", "model": self.engine.model_name, "usage": usage, "choices": [
            {"index": i, "finish_reason": c["finish_reason"], "message": {"role": "assistant", "content": c["text"]}}
            for i, c in sorted(choices.items())]})

    def send_completion_request(self, request: CompletionRequest):
        ids = self.engine.tokenizer.encode(request.prompt)
        choices, usage = _collect(self._events(ids, request))
        prefix = request.prompt if request.echo_prompt else ""
        return _namespace({"object": "text_completion", "model": self.engine.model_name, "usage": usage, "choices": [
            {"index": i, "finish_reason": c["finish_reason"], "text": prefix + c["text"]}
            for i, c in sorted(choices.items())]})

    def _events(self, ids: list[int], r, logprobs: bool = False, top_logprobs: int = 0):
        sampling = SamplingParams(
            temperature=r.temperature, top_k=r.top_k, top_p=r.top_p, min_p=r.min_p,
            frequency_penalty=r.frequency_penalty or 0.0, presence_penalty=r.presence_penalty or 0.0,
            repetition_penalty=r.repetition_penalty, logit_bias=dict(r.logit_bias or {}), seed=r.seed,
            logprobs=logprobs, top_logprobs=top_logprobs)
        stopping = StoppingCriteria(max_tokens=r.max_tokens, stop_strings=tuple(r.stop_seqs or ()))
        handle = self.engine.submit(GenerationRequest(ids, sampling, stopping, n=r.n_choices))
        try:
            for event in handle:
                if isinstance(event, RequestError):
                    raise RuntimeError(event.message)
                yield event
        finally:
            handle.cancel()


def _artifact_path(which, in_situ_quant: str | None) -> str:
    from .compile_cache import cached_artifact

    if isinstance(which, Which.Artifact):
        return which.path
    if isinstance(which, Which.GGUF):
        model = Path(which.quantized_model_id) / which.quantized_filename if which.quantized_filename else which.quantized_model_id
        return str(cached_artifact(str(model), in_situ_quant, "onnxruntime", "cpu"))
    return str(cached_artifact(which.model_id, in_situ_quant, "onnxruntime", "cpu"))


def _collect(events) -> tuple[dict[int, dict], dict]:
    choices: dict[int, dict] = {}
    for event in events:
        if isinstance(event, ChoiceDelta):
            choice = choices.setdefault(event.index, {"text": "", "finish_reason": None})
            choice["text"] += event.text
            choice["finish_reason"] = event.finish_reason or choice["finish_reason"]
        elif isinstance(event, RequestDone):
            u = event.usage
            usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                     "total_tokens": u.total_tokens}
    return choices, usage


def _chunk(delta: ChoiceDelta) -> dict:
    return {"object": "chat.completion.chunk", "choices": [
        {"index": delta.index, "finish_reason": delta.finish_reason, "delta": {"role": "assistant", "content": delta.text}}]}


def _namespace(data):
    return json.loads(json.dumps(data), object_hook=lambda d: SimpleNamespace(**d))

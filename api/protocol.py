"""Request fields that chat and completions share: model, sampling, stopping, n, streaming, truncation."""
from dataclasses import dataclass

from mistralrs.runtime.request import GenerationRequest, SamplingParams, StoppingCriteria

from .body import BOOLEAN, INTEGER, NUMBER, OBJECT, STRING, Body, invalid_type
from .errors import APIError, invalid_request

DEFAULT_MODEL = "default"


@dataclass(slots=True)
class Options:
    """Everything a request asks for besides its prompt."""

    sampling: SamplingParams
    stopping: StoppingCriteria
    n: int
    stream: bool
    include_usage: bool
    truncate: bool

    def request(self, prompt_token_ids: list[int]) -> GenerationRequest:
        return GenerationRequest(prompt_token_ids, self.sampling, self.stopping, self.n)


def check_model(body: Body, model_name: str) -> None:
    model = body.get("model", STRING, DEFAULT_MODEL)
    if model not in (DEFAULT_MODEL, model_name):
        raise APIError(404, f"The model `{model}` does not exist. Available models: {DEFAULT_MODEL}, {model_name}. "
                            f"Use '{DEFAULT_MODEL}' to use the default model.", param="model", code="model_not_found")


def parse_options(body: Body, vocab_size: int, logprobs: bool, top_logprobs: int) -> Options:
    """`logprobs`/`top_logprobs` are parsed by the caller: chat and completions spell them differently."""
    stream = body.get("stream", BOOLEAN, False)
    return Options(
        sampling=parse_sampling(body, vocab_size, logprobs, top_logprobs),
        stopping=parse_stopping(body),
        n=body.get("n", INTEGER, 1, minimum=1),
        stream=stream,
        include_usage=_include_usage(body) and stream,
        truncate=body.get("truncate_sequence", BOOLEAN, False),
    )


def parse_sampling(body: Body, vocab_size: int, logprobs: bool, top_logprobs: int) -> SamplingParams:
    return SamplingParams(
        temperature=body.get("temperature", NUMBER, minimum=0),
        top_k=body.get("top_k", INTEGER),
        top_p=body.get("top_p", NUMBER, minimum=0, maximum=1),
        min_p=body.get("min_p", NUMBER, minimum=0, maximum=1),
        frequency_penalty=body.get("frequency_penalty", NUMBER, 0.0),
        presence_penalty=body.get("presence_penalty", NUMBER, 0.0),
        repetition_penalty=_repetition_penalty(body),
        logit_bias=_logit_bias(body.get("logit_bias", OBJECT, {}), vocab_size),
        seed=body.get("seed", INTEGER),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )


def parse_stopping(body: Body) -> StoppingCriteria:
    return StoppingCriteria(
        max_tokens=_max_tokens(body),
        stop_strings=_stop_strings(body.data.get("stop")),
        ignore_eos=body.get("ignore_eos", BOOLEAN, False),
    )


def _max_tokens(body: Body) -> int | None:
    """`max_completion_tokens` (OpenAI's new name) wins over `max_tokens`."""
    name = "max_completion_tokens" if body.data.get("max_completion_tokens") is not None else "max_tokens"
    return body.get(name, INTEGER, minimum=1)


def _stop_strings(stop: object) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise invalid_request("Invalid type for 'stop': expected a string or an array of strings.", "stop",
                              "invalid_type")
    return tuple(s for s in stop if s)


def _repetition_penalty(body: Body) -> float | None:
    penalty = body.get("repetition_penalty", NUMBER)
    if penalty is not None and penalty <= 0:
        raise invalid_request(f"Invalid value for 'repetition_penalty': {penalty} must be greater than 0.",
                              "repetition_penalty")
    return penalty


def _logit_bias(raw: dict, vocab_size: int) -> dict[int, float]:
    """JSON object keys are strings; the engine wants token ids."""
    bias = {}
    for key, value in raw.items():
        token_id = _token_id(key)
        if token_id is None or token_id >= vocab_size:
            raise invalid_request(f"Invalid key in 'logit_bias': {key!r} is not a token id of this model.",
                                  "logit_bias")
        if not NUMBER.accepts(value):
            raise invalid_type(f"logit_bias.{key}", NUMBER, value)
        bias[token_id] = float(value)
    return bias


def _token_id(key: str) -> int | None:
    try:
        token_id = int(key)
    except ValueError:
        return None
    return token_id if token_id >= 0 else None


def _include_usage(body: Body) -> bool:
    include = body.get("stream_options", OBJECT, {}).get("include_usage", False)
    if not BOOLEAN.accepts(include):
        raise invalid_type("stream_options.include_usage", BOOLEAN, include)
    return include

"""POST /v1/chat/completions, JSON or SSE."""
import falcon

from mistralrs.runtime.outputs import ChoiceDelta, RequestDone

from .body import BOOLEAN, INTEGER, Body, read_body
from .context_length import fit_prompt
from .errors import invalid_request
from .generation import ChoiceResult, collect, submit
from .messages import render_prompt
from .protocol import check_model, parse_options
from .responses import Head, chat_logprobs, usage_dict
from .sse import stream

MAX_TOP_LOGPROBS = 20


class ChatCompletions:
    def __init__(self, engine):
        self.engine = engine

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req)
        check_model(body, self.engine.model_name)
        tokenizer = self.engine.tokenizer
        logprobs, top_logprobs = _parse_logprobs(body)
        options = parse_options(body, tokenizer.vocab_size, logprobs, top_logprobs)
        prompt_ids = tokenizer.encode(render_prompt(body, tokenizer), add_special_tokens=False)
        prompt_ids = fit_prompt(prompt_ids, options.stopping.max_tokens, self.engine.max_context, options.truncate,
                                "messages")
        generation = submit(self.engine, [options.request(prompt_ids)])
        head = Head.new("chatcmpl", self.engine.model_name)
        if options.stream:
            stream(resp, generation, ChatChunks(head, logprobs, options.include_usage), req)
            return
        results, usage = collect(generation)
        req.context.usage = usage
        resp.media = head.wrap("chat.completion", [_choice(r, logprobs) for r in results], usage_dict(usage))


def _parse_logprobs(body: Body) -> tuple[bool, int]:
    logprobs = body.get("logprobs", BOOLEAN, False)
    top_logprobs = body.get("top_logprobs", INTEGER, 0, minimum=0, maximum=MAX_TOP_LOGPROBS)
    if top_logprobs and not logprobs:
        raise invalid_request("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs")
    return logprobs, top_logprobs


def _choice(result: ChoiceResult, logprobs: bool) -> dict:
    return {
        "finish_reason": result.finish_reason,
        "index": result.index,
        "message": {"content": result.text, "role": "assistant", "tool_calls": None},
        "logprobs": chat_logprobs(result.logprobs) if logprobs else None,
    }


class ChatChunks:
    """Chunk payloads; each choice's first delta carries the assistant role."""

    def __init__(self, head: Head, logprobs: bool, include_usage: bool):
        self.head = head
        self.logprobs = logprobs
        self.include_usage = include_usage
        self.started: set[int] = set()

    def delta(self, delta: ChoiceDelta) -> dict:
        message = {"content": delta.text}
        if delta.index not in self.started:
            self.started.add(delta.index)
            message = {"role": "assistant", **message}
        choice = {
            "finish_reason": delta.finish_reason,
            "index": delta.index,
            "delta": message,
            "logprobs": chat_logprobs(delta.logprobs) if self.logprobs else None,
        }
        return self.head.wrap("chat.completion.chunk", [choice], None)

    def done(self, done: RequestDone) -> dict | None:
        if not self.include_usage:
            return None
        return self.head.wrap("chat.completion.chunk", [], usage_dict(done.usage))

"""POST /v1/completions (legacy text completion), JSON or SSE."""
from dataclasses import dataclass

import falcon

from mistralrs.runtime.outputs import ChoiceDelta, RequestDone

from .body import BOOLEAN, INTEGER, STRING, read_body
from .context_length import fit_prompt
from .generation import ChoiceResult, collect, submit
from .prompts import parse_prompts
from .protocol import check_model, parse_options
from .responses import Head, completion_logprobs, usage_dict
from .sse import stream

MAX_LOGPROBS = 5


@dataclass(frozen=True, slots=True)
class Framing:
    """What surrounds each choice's completion: the echoed prompt before it, the suffix after it."""

    prefixes: list[str]
    suffix: str
    n: int

    def prefix(self, choice_index: int) -> str:
        return self.prefixes[choice_index // self.n]


class Completions:
    def __init__(self, engine):
        self.engine = engine

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req)
        check_model(body, self.engine.model_name)
        tokenizer = self.engine.tokenizer
        top_logprobs = body.get("logprobs", INTEGER, minimum=0, maximum=MAX_LOGPROBS)
        logprobs = top_logprobs is not None
        options = parse_options(body, tokenizer.vocab_size, logprobs, top_logprobs or 0)
        prompts = parse_prompts(body.data.get("prompt"), tokenizer)
        echo = body.get("echo", BOOLEAN, False)
        framing = Framing([p.text if echo else "" for p in prompts], body.get("suffix", STRING, ""), options.n)
        requests = [options.request(fit_prompt(p.token_ids, options.stopping.max_tokens, self.engine.max_context,
                                               options.truncate, "prompt")) for p in prompts]
        generation = submit(self.engine, requests)
        head = Head.new("cmpl", self.engine.model_name)
        if options.stream:
            stream(resp, generation, CompletionChunks(head, framing, logprobs, options.include_usage), req)
            return
        results, usage = collect(generation)
        req.context.usage = usage
        resp.media = head.wrap("text_completion", [_choice(r, framing, logprobs) for r in results],
                               usage_dict(usage))


def _choice(result: ChoiceResult, framing: Framing, logprobs: bool) -> dict:
    prefix = framing.prefix(result.index)
    return {
        "finish_reason": result.finish_reason,
        "index": result.index,
        "text": prefix + result.text + framing.suffix,
        "logprobs": completion_logprobs(result.logprobs, len(prefix)) if logprobs else None,
    }


class CompletionChunks:
    """Chunk payloads; the echoed prompt opens each choice, the suffix closes it."""

    def __init__(self, head: Head, framing: Framing, logprobs: bool, include_usage: bool):
        self.head = head
        self.framing = framing
        self.logprobs = logprobs
        self.include_usage = include_usage
        self.text_offsets: dict[int, int] = {}

    def delta(self, delta: ChoiceDelta) -> dict:
        text = delta.text
        if delta.index not in self.text_offsets:
            prefix = self.framing.prefix(delta.index)
            text = prefix + text
            self.text_offsets[delta.index] = len(prefix)
        logprobs = completion_logprobs(delta.logprobs, self.text_offsets[delta.index]) if self.logprobs else None
        self.text_offsets[delta.index] += len(delta.text)
        if delta.finish_reason is not None:
            text += self.framing.suffix
        choice = {"text": text, "index": delta.index, "logprobs": logprobs, "finish_reason": delta.finish_reason}
        return self.head.wrap("text_completion", [choice], None)

    def done(self, done: RequestDone) -> dict | None:
        if not self.include_usage:
            return None
        return self.head.wrap("text_completion", [], usage_dict(done.usage))

"""OpenAI-shaped response pieces shared by chat and completions (mistral.rs field order and extras)."""
import time
import uuid
from dataclasses import dataclass

from mistralrs.runtime.outputs import RequestUsage, TokenLogprob

SYSTEM_FINGERPRINT = "local"


@dataclass(frozen=True, slots=True)
class Head:
    """The fields every response and chunk of one API call repeats."""

    id: str
    created: int
    model: str

    @classmethod
    def new(cls, prefix: str, model: str) -> "Head":
        return cls(f"{prefix}-{uuid.uuid4().hex}", int(time.time()), model)

    def wrap(self, obj: str, choices: list[dict], usage: dict | None) -> dict:
        return {"id": self.id, "choices": choices, "created": self.created, "model": self.model,
                "system_fingerprint": SYSTEM_FINGERPRINT, "object": obj, "usage": usage}


def usage_dict(usage: RequestUsage) -> dict:
    total_time_s = usage.prompt_time_s + usage.completion_time_s
    return {
        "completion_tokens": usage.completion_tokens,
        "prompt_tokens": usage.prompt_tokens,
        "total_tokens": usage.total_tokens,
        "avg_tok_per_sec": _rate(usage.total_tokens, total_time_s),
        "avg_prompt_tok_per_sec": _rate(usage.prompt_tokens, usage.prompt_time_s),
        "avg_compl_tok_per_sec": _rate(usage.completion_tokens, usage.completion_time_s),
        "total_time_sec": total_time_s,
        "total_prompt_time_sec": usage.prompt_time_s,
        "total_completion_time_sec": usage.completion_time_s,
    }


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def chat_logprobs(entries: list[TokenLogprob]) -> dict:
    return {"content": [{**_chat_token(e), "top_logprobs": [_chat_token(t) for t in e.top]} for e in entries]}


def _chat_token(entry: TokenLogprob) -> dict:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": entry.bytes}


def completion_logprobs(entries: list[TokenLogprob], text_offset: int) -> dict:
    """`text_offset` is where the first entry's token starts in the choice's text."""
    offsets = []
    for entry in entries:
        offsets.append(text_offset)
        text_offset += len(entry.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{t.token: t.logprob for t in e.top} for e in entries],
        "text_offset": offsets,
    }

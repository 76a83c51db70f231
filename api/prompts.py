"""The completions `prompt` field: a string, strings, token ids, or lists of token ids."""
from dataclasses import dataclass

from .body import INTEGER
from .errors import invalid_request


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str
    token_ids: list[int]


def parse_prompts(raw: object, tokenizer) -> list[Prompt]:
    if raw is None:
        raise invalid_request("Missing required parameter: 'prompt'.", "prompt")
    if isinstance(raw, str):
        return [_from_text(raw, tokenizer)]
    if isinstance(raw, list) and raw:
        if all(isinstance(p, str) for p in raw):
            return [_from_text(p, tokenizer) for p in raw]
        if all(INTEGER.accepts(t) for t in raw):
            return [_from_ids(raw, tokenizer)]
        if all(isinstance(p, list) and all(INTEGER.accepts(t) for t in p) for p in raw):
            return [_from_ids(p, tokenizer) for p in raw]
    raise invalid_request("'prompt' must be a string, an array of strings, an array of token ids, or an array of "
                          "arrays of token ids.", "prompt")


def _from_text(text: str, tokenizer) -> Prompt:
    return Prompt(text, tokenizer.encode(text, add_special_tokens=True))


def _from_ids(token_ids: list[int], tokenizer) -> Prompt:
    vocab_size = tokenizer.vocab_size
    if any(t < 0 or t >= vocab_size for t in token_ids):
        raise invalid_request(f"'prompt' holds a token id outside this model's vocabulary (0..{vocab_size - 1}).",
                              "prompt")
    return Prompt(tokenizer.decode(token_ids, skip_special_tokens=False), token_ids)


"""Fitting a prompt into the model's context window (`truncate_sequence`)."""
from .errors import invalid_request
from .logs import logger


def fit_prompt(token_ids: list[int], max_tokens: int | None, max_context: int, truncate: bool,
               param: str) -> list[int]:
    """Room is reserved for max_tokens (1 when unset); truncation drops tokens from the prompt's start."""
    if not token_ids:
        raise invalid_request("The prompt is empty.", param)
    reserved = min(max_tokens or 1, max_context)
    if len(token_ids) + reserved <= max_context:
        return token_ids
    if not truncate:
        raise invalid_request(
            f"Prompt sequence length ({len(token_ids)} tokens) plus max_tokens ({reserved}) exceeds the model's "
            f"context length of {max_context} tokens; shorten the prompt, lower max_tokens, or set "
            "`truncate_sequence: true` to drop the oldest prompt tokens.", param, "context_length_exceeded")
    kept = max_context - reserved
    if kept <= 0:
        raise invalid_request(f"max_tokens ({max_tokens}) leaves no room for the prompt in the model's context "
                              f"length of {max_context} tokens.", "max_tokens", "context_length_exceeded")
    logger.warning("truncated a prompt of %d tokens to its last %d tokens", len(token_ids), kept)
    return token_ids[-kept:]

"""Token ids -> text deltas, one token at a time, never splitting a UTF-8 character."""


class IncrementalDetokenizer:
    """Text-generation-inference's prefix/read offsets: each push decodes only the window
    ids[prefix:] and emits what it adds to ids[prefix:read]. Decoding both from the same
    start keeps SentencePiece's strip-the-first-space rule consistent, so the concatenation
    of all pushes and flush() equals tokenizer.decode(all_ids)."""

    def __init__(self, tokenizer, skip_special_tokens: bool = True):
        self._tokenizer = tokenizer
        self._skip_special_tokens = skip_special_tokens
        self._skipped_ids = tokenizer.special_token_ids if skip_special_tokens else set()
        self._byte_fallback_ids = tokenizer.byte_fallback_ids
        self._ids: list[int] = []
        self._read_offset = 0
        self._prefix_text = ""
        self._in_byte_run = False

    def push(self, token_id: int) -> str:
        """The text that `token_id` completes ("" while a character is still incomplete)."""
        self._ids.append(token_id)
        if token_id not in self._skipped_ids:
            # A later byte token can make SentencePiece's byte-fallback run invalid as a whole.
            self._in_byte_run = token_id in self._byte_fallback_ids
        if self._in_byte_run:
            return ""
        text = self._decode(self._ids)
        if len(text) <= len(self._prefix_text) or text.endswith("\ufffd"):
            return ""
        return self._advance(text)

    def flush(self) -> str:
        """Whatever is still held back, at the end of generation."""
        return self._advance(self._decode(self._ids))

    def _advance(self, text: str) -> str:
        delta = text[len(self._prefix_text):]
        del self._ids[:self._read_offset]
        self._read_offset = len(self._ids)
        self._prefix_text = self._decode(self._ids)
        return delta

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip_special_tokens)

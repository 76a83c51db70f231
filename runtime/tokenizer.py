"""A checkpoint's tokenizer (HF tokenizer.json via the `tokenizers` library) plus its chat template."""
import json
import os
import re
from pathlib import Path

import tokenizers

from .chat_template import ChatTemplate, token_content
from .detokenizer import IncrementalDetokenizer

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from each byte to a printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


_UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _vocab_kind(backend: tokenizers.Tokenizer) -> str:
    """"byte_level" (GPT-2 style), "sentencepiece" (▁ + <0xNN> byte fallback) or "plain"."""
    decoder = backend.decoder.__getstate__().decode() if backend.decoder is not None else ""
    if '"ByteLevel"' in decoder:
        return "byte_level"
    if "ByteFallback" in decoder or "Metaspace" in decoder or "\u2581" in decoder:
        return "sentencepiece"
    return "plain"


def _eos_ids(backend: tokenizers.Tokenizer, config: dict, generation_config: dict) -> set[int]:
    ids = set()
    eos = token_content(config.get("eos_token"))
    if eos is not None and backend.token_to_id(eos) is not None:
        ids.add(backend.token_to_id(eos))
    extra = generation_config.get("eos_token_id")
    ids.update(extra if isinstance(extra, list) else [extra] if extra is not None else [])
    return ids


def _bos_id(backend: tokenizers.Tokenizer, config: dict, generation_config: dict) -> int | None:
    bos = token_content(config.get("bos_token"))
    bos_id = backend.token_to_id(bos) if bos is not None else None
    return bos_id if bos_id is not None else generation_config.get("bos_token_id")


class Tokenizer:
    """Encode/decode, per-token bytes for logprobs, and chat-template rendering."""

    def __init__(self, backend: tokenizers.Tokenizer, config: dict | None = None,
                 generation_config: dict | None = None, chat_template: ChatTemplate | None = None):
        config, generation_config = config or {}, generation_config or {}
        self._backend = backend
        self.chat_template = chat_template
        self.generation_config = generation_config
        self.bos_token_id = _bos_id(backend, config, generation_config)
        self.eos_token_ids = _eos_ids(backend, config, generation_config)
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self._backend_adds_bos = self._post_processor_adds_bos()
        explicit_bos = config.get("add_bos_token", self._backend_adds_bos)
        self.add_bos_token = bool(explicit_bos) and self.bos_token_id is not None
        added = backend.get_added_tokens_decoder()
        self._added_ids = set(added)
        self.special_token_ids = {i for i, token in added.items() if token.special}
        self._vocab_kind = _vocab_kind(backend)
        self.byte_fallback_ids = self._find_byte_fallback_ids()

    @classmethod
    def from_dir(cls, path: str | os.PathLike,
                 generation_config: dict | str | os.PathLike | None = None) -> "Tokenizer":
        """Load tokenizer.json + tokenizer_config.json (+ chat_template.jinja, generation_config.json) from `path`."""
        path = Path(path)
        config = _read_json(path / "tokenizer_config.json")
        if generation_config is None:
            generation_config = path / "generation_config.json"
        if not isinstance(generation_config, dict):
            generation_config = _read_json(Path(generation_config))
        backend = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        return cls(backend, config, generation_config, ChatTemplate.from_config(config, path))

    def _find_byte_fallback_ids(self) -> frozenset[int]:
        """Ids of SentencePiece's <0xNN> tokens, which the decoder joins into one byte run."""
        if self._vocab_kind != "sentencepiece":
            return frozenset()
        ids = (self._backend.token_to_id(f"<0x{b:02X}>") for b in range(256))
        return frozenset(i for i in ids if i is not None)

    def _post_processor_adds_bos(self) -> bool:
        with_special = self._backend.encode("a", add_special_tokens=True).ids
        without = self._backend.encode("a", add_special_tokens=False).ids
        return len(with_special) > len(without) and with_special[0] == self.bos_token_id

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids; special tokens written in `text` map to their ids. BOS follows `add_bos_token`."""
        ids = self._backend.encode(text, add_special_tokens=add_special_tokens).ids
        if not add_special_tokens or self.add_bos_token == self._backend_adds_bos:
            return ids
        return [self.bos_token_id, *ids] if self.add_bos_token else ids[1:]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes one token stands for (a piece of a UTF-8 character for byte tokens)."""
        piece = self._backend.id_to_token(token_id)
        if piece is None:
            return b""
        if token_id in self._added_ids:
            return piece.encode()
        if self._vocab_kind == "byte_level":
            if all(c in _UNICODE_TO_BYTE for c in piece):
                return bytes(_UNICODE_TO_BYTE[c] for c in piece)
            return piece.encode()
        if self._vocab_kind == "sentencepiece":
            byte = _BYTE_FALLBACK.fullmatch(piece)
            return bytes([int(byte.group(1), 16)]) if byte else piece.replace("\u2581", " ").encode()
        return self.decode([token_id], skip_special_tokens=False).encode()

    def token_text(self, token_id: int) -> str:
        """One token as text, leading space kept; bytes that are not whole characters become U+FFFD."""
        return self.token_bytes(token_id).decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: list[dict], tools: list[dict] | None = None,
                            add_generation_prompt: bool = True, **template_kwargs) -> str:
        if self.chat_template is None:
            raise ValueError("this model has no chat template")
        return self.chat_template.render(messages, tools, add_generation_prompt, **template_kwargs)

    def new_detokenizer(self, skip_special_tokens: bool = True) -> IncrementalDetokenizer:
        return IncrementalDetokenizer(self, skip_special_tokens)

"""HF tokenizer files converted from a GGUF's embedded tokenizer (transformers, compile time only)."""

from pathlib import Path

from ..checkpoint import CheckpointError
from .tokenizer_files import export_tokenizer_files, update_tokenizer_config


def gguf_tokenizer_files(path: Path, metadata: dict) -> dict[str, bytes]:
    files = export_tokenizer_files(_hf_tokenizer(path))
    files["tokenizer_config.json"] = update_tokenizer_config(files["tokenizer_config.json"], _config_values(metadata))
    return files


def _hf_tokenizer(path: Path):
    from transformers import AutoTokenizer  # heavy; only GGUF compiles need it

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (ValueError, KeyError, OSError) as err:
        raise CheckpointError(f"{path}: cannot convert the GGUF tokenizer to HF tokenizer files: {err}") from err


def _config_values(metadata: dict) -> dict:
    """What the GGUF says about templates, BOS/EOS and their insertion; this wins over the conversion."""
    tokens = metadata["tokenizer.ggml.tokens"]
    values = {
        f"{kind}_token": tokens[metadata[f"tokenizer.ggml.{kind}_token_id"]]
        for kind in ("bos", "eos")
        if f"tokenizer.ggml.{kind}_token_id" in metadata
    }
    for key in ("add_bos_token", "add_eos_token"):
        if f"tokenizer.ggml.{key}" in metadata:
            values[key] = metadata[f"tokenizer.ggml.{key}"]
    if "tokenizer.chat_template" in metadata:
        values["chat_template"] = metadata["tokenizer.chat_template"]
    return values

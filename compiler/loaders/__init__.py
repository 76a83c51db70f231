"""Checkpoint loaders: a GGUF file, a local HF directory, or an HF model id from the local cache."""

import re
from pathlib import Path

from ..checkpoint import Checkpoint, CheckpointError
from .gguf_file import load_gguf_file
from .hf_cache import load_hf_cache
from .hf_dir import load_hf_dir

_MODEL_ID = re.compile(r"\w[\w.-]*/\w[\w.-]*")


def load_checkpoint(spec: str | Path) -> Checkpoint:
    """A .gguf file, an HF model directory, or an "org/name" id resolved from the local HF cache."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_hf_dir(path)
    if path.is_file() and path.suffix == ".gguf":
        return load_gguf_file(path)
    if path.is_file():
        raise CheckpointError(f"{path} is not a .gguf file: pass a .gguf file, an HF model directory or an HF model id")
    if isinstance(spec, str) and _MODEL_ID.fullmatch(spec):
        return load_hf_cache(spec)
    raise CheckpointError(f"{spec}: no such file or directory, and not an HF model id (org/name)")


__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "load_gguf_file", "load_hf_cache", "load_hf_dir"]

"""A loaded checkpoint: HF-style config, tokenizer files and lazily loaded float32 tensors in HF layout."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or in a form we cannot read."""


class TensorStore(Protocol):
    def names(self) -> list[str]: ...

    def load(self, name: str) -> np.ndarray: ...

    def quantization(self, name: str) -> str | None: ...


@dataclass
class Checkpoint:
    name: str
    config: dict
    tokenizer_files: dict[str, bytes] = field(repr=False)
    generation_config: dict
    source_files: list[Path]
    source_format: str
    store: TensorStore = field(repr=False, compare=False)

    def tensor_names(self) -> list[str]:
        """HF tensor names; "lm_head.weight" only when the embeddings are not tied."""
        return self.store.names()

    def load_tensor(self, name: str) -> np.ndarray:
        """One tensor as float32 in HF layout ([out, in] for linears)."""
        return self.store.load(name)

    def source_quantization(self, name: str) -> str | None:
        """The GGUF type name the tensor is stored as ("Q4_1", "F32", ...); None for HF checkpoints."""
        return self.store.quantization(name)

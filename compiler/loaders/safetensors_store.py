"""Tensors read one at a time from memory-mapped safetensors files."""

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open


def tensor_keys(path: Path) -> list[str]:
    with safe_open(path, framework="pt") as handle:
        return list(handle.keys())


class SafetensorsStore:
    def __init__(self, files_by_name: dict[str, Path]):
        self._files_by_name = files_by_name
        self._handles = {}

    def names(self) -> list[str]:
        return list(self._files_by_name)

    def load(self, name: str) -> np.ndarray:
        return self._handle(self._files_by_name[name]).get_tensor(name).to(torch.float32).numpy()

    def quantization(self, name: str) -> None:
        return None

    def _handle(self, path: Path):
        if path not in self._handles:
            self._handles[path] = safe_open(path, framework="pt")
        return self._handles[path]

"""A GGUF file: metadata becomes an HF config, tensors are dequantized one at a time into HF layout."""

from pathlib import Path

import numpy as np
from gguf import GGUFReader, ReaderTensor
from gguf.quants import dequantize

from ..checkpoint import Checkpoint, CheckpointError
from .gguf_config import generation_config, hf_config
from .gguf_names import CONFIG_ONLY_TENSORS, hf_tensor_name, unpermute_rows
from .gguf_tokenizer import gguf_tokenizer_files


def load_gguf_file(path: Path) -> Checkpoint:
    path = Path(path).absolute()
    reader = _open(path)
    metadata = {key: field.contents() for key, field in reader.fields.items()}
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    config = hf_config(metadata, tensors)
    return Checkpoint(
        name=path.stem,
        config=config,
        tokenizer_files=gguf_tokenizer_files(path, metadata),
        generation_config=generation_config(metadata),
        source_files=[path],
        source_format="gguf",
        store=GGUFStore(tensors, config),
    )


class GGUFStore:
    def __init__(self, tensors: dict[str, ReaderTensor], config: dict):
        self._tensors = {hf_tensor_name(name): t for name, t in tensors.items() if name not in CONFIG_ONLY_TENSORS}
        self._permuted_heads = _permuted_heads(config)

    def names(self) -> list[str]:
        return list(self._tensors)

    def load(self, name: str) -> np.ndarray:
        tensor = self._tensors[name]
        weight = _dequantize(tensor).reshape(tuple(reversed(tensor.shape.tolist())))  # GGUF dims: innermost first
        module = name.split(".")[-2]
        if module in self._permuted_heads:
            weight = unpermute_rows(weight, self._permuted_heads[module])
        return np.require(weight, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])

    def quantization(self, name: str) -> str:
        return self._tensors[name].tensor_type.name


def _open(path: Path) -> GGUFReader:
    try:
        return GGUFReader(path)
    except ValueError as err:
        raise CheckpointError(f"{path} is not a readable GGUF file: {err}") from err


def _permuted_heads(config: dict) -> dict[str, int]:
    """llama.cpp interleaves q/k rows per head for llama-arch models only."""
    if config["model_type"] != "llama":
        return {}
    return {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}


def _dequantize(tensor: ReaderTensor) -> np.ndarray:
    try:
        return dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as err:
        raise CheckpointError(f"GGUF tensor {tensor.name}: {tensor.tensor_type.name} cannot be dequantized") from err

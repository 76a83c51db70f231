"""Compact storage of the optimized ONNX model: fp32 initializers whose values are all fp16 values are stored as fp16.

ORT's CPU MatMulNBits takes fp32 scales with fp32 activations, so the graph keeps fp32 tensors; but the quantizers
make every scale and float-zero-point offset an fp16 value (as ggml stores them), so those tensors lose nothing in
fp16. They move from the external data file into a safetensors file of fp16 tensors; in the graph each keeps an fp32
declaration whose external data names a file that does not exist (PLACEHOLDER), so that nothing reads it by mistake.
The runtime widens them back to fp32 and hands them to the session with `SessionOptions.add_external_initializers`,
which replaces those declarations before any data is read.
"""
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

FP16_FILE = "model.fp16.safetensors"
PLACEHOLDER = "widened-at-load-from-" + FP16_FILE
ALIGNMENT = 64  # 4096 for tensors of at least LARGE bytes, so they can be memory-mapped
LARGE = 1 << 20


def store_exact_fp16(model_path: Path, data_file: str) -> list[str]:
    """Move the exactly-fp16 fp32 initializers of `model_path` (external data in `data_file`) into FP16_FILE;
    rewrite the data file without them. Returns their names in graph order (empty: nothing changed, no FP16_FILE)."""
    model = onnx.load(str(model_path), load_external_data=False)
    data_path = model_path.parent / data_file
    externals = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    with open(data_path, "rb") as data:
        halves = {t.name: half for t in externals if (half := _exact_fp16(t, data)) is not None}
    if not halves:
        return []
    _rewrite_data(data_path, [t for t in externals if t.name not in halves])
    for tensor in externals:
        if tensor.name in halves:
            _set_external(tensor, PLACEHOLDER, 0, int(np.prod(tensor.dims, dtype=np.int64)) * 4)
    from safetensors.numpy import save_file

    save_file(halves, str(model_path.parent / FP16_FILE))
    shutil.copymode(data_path, model_path.parent / FP16_FILE)  # safetensors writes it owner-only
    onnx.save_model(model, str(model_path))
    return list(halves)


def _exact_fp16(tensor: TensorProto, data) -> np.ndarray | None:
    """The tensor as fp16 if it is fp32 and every value survives the round trip bit for bit, else None."""
    if tensor.data_type != TensorProto.FLOAT:
        return None
    values = np.frombuffer(_read(tensor, data), np.float32).reshape(tuple(tensor.dims))
    with np.errstate(over="ignore"):
        half = values.astype(np.float16)
    return half if np.array_equal(half.astype(np.float32).view(np.uint32), values.view(np.uint32)) else None


def _read(tensor: TensorProto, data) -> bytes:
    info = {entry.key: entry.value for entry in tensor.external_data}
    data.seek(int(info.get("offset", 0)))
    return data.read(int(info["length"]))


def _rewrite_data(data_path: Path, kept: list[TensorProto]) -> None:
    """Write the kept tensors' bytes into a fresh data file (in their old order) and point them at it."""
    location = data_path.name
    staging = data_path.with_name(data_path.name + ".partial")
    kept = sorted(kept, key=lambda t: int({e.key: e.value for e in t.external_data}.get("offset", 0)))
    with open(data_path, "rb") as old, open(staging, "wb") as new:
        for tensor in kept:
            payload = _read(tensor, old)
            alignment = 4096 if len(payload) >= LARGE else ALIGNMENT
            new.write(b"\0" * (-new.tell() % alignment))
            _set_external(tensor, location, new.tell(), len(payload))
            new.write(payload)
    staging.replace(data_path)


def _set_external(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        tensor.external_data.add(key=key, value=str(value))

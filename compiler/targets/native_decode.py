"""Lower the IR's decode step (one new token per row) to ops/native_decode.c: a tape of instructions over activation
values, the weights packed in that file's panel layout, and the C file compiled for the target CPU.

The artifact's ONNX graph still runs prefill (and the last position of a prompt whose prefix was shared); the tape
runs every other decode step, with int8 activations in its matmuls (AVX-512 VNNI; AMX for batches where there is).
"""
import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ...model_zoo.rope import inverse_frequencies
from ...ops.quantize import QuantizedTensor, unpack
from ..ir import Graph, Node

logger = logging.getLogger("mistralrs.compiler")

LIBRARY_FILE, PROGRAM_FILE, WEIGHTS_FILE = "native_decode.so", "native_decode.json", "native_decode.bin"
ISA_FLAGS = ("avx2", "f16c", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni")  # as /proc/cpuinfo spells them
# AMX code is compiled in and runs only where the runtime finds AMX-INT8 (batches of 5 or more rows)
COMPILE_FLAGS = ["-O3", "-march=x86-64-v4", "-mavx512vnni", "-mamx-tile", "-mamx-int8", "-ffast-math", "-fopenmp",
                 "-fPIC", "-shared"]
OPS = {"embed": 1, "rms_norm": 2, "skip_rms_norm": 3, "linear": 4, "head_rms_norm": 5, "attention": 6, "add": 7,
       "silu_mul": 8}
W_F32, PANEL, BLOCK, ALIGN = 0, 16, 32, 64
MAX_HEAD_DIM = 256  # 16 vectors of 16 floats (MAX_CHUNKS in the C file)


class NativeDecodeUnsupported(ValueError):
    pass


@dataclass(slots=True)
class Value:
    buffer: int
    offset: int
    width: int


class NativeDecodeLowering:
    def __init__(self, graph: Graph):
        self.graph, self.cfg = graph, graph.config
        self.values: dict[str, Value] = {}
        self.buffer_widths: list[int] = []
        self.free: dict[int, list[int]] = {}  # width -> buffers no live value uses
        self.weights: dict[str, int] = {}
        self.weight_table: list[list[int]] = []
        self.blob = bytearray()
        self.tape: list[dict] = []

    def run(self, out_dir: Path) -> list[str]:
        if self.cfg.head_dim % 16 or self.cfg.head_dim > MAX_HEAD_DIM:
            raise NativeDecodeUnsupported(f"native decode needs a head_dim that is a multiple of 16 up to "
                                          f"{MAX_HEAD_DIM}, not {self.cfg.head_dim}")
        released = self._last_reads()
        for index, node in enumerate(self.graph.nodes):
            self._lower(node)
            for name in released.pop(index, ()):
                if name in self.values:  # not a graph input
                    buffer = self.values[name].buffer
                    self.free.setdefault(self.buffer_widths[buffer], []).append(buffer)
        (out_dir / WEIGHTS_FILE).write_bytes(bytes(self.blob))
        (out_dir / PROGRAM_FILE).write_text(json.dumps(self._program()))
        compile_library(out_dir / LIBRARY_FILE)
        logger.info("native decode: %d instructions, %d activation buffers, %.1f MB of packed weights",
                    len(self.tape), len(self.buffer_widths), len(self.blob) / 1e6)
        return [LIBRARY_FILE, PROGRAM_FILE, WEIGHTS_FILE]

    def _program(self) -> dict:
        names = list(self.values)
        return {"config": {"num_heads": self.cfg.num_heads, "kv_heads": self.cfg.num_kv_heads,
                           "head_dim": self.cfg.head_dim, "logits": names.index("logits")},
                "inv_freq": inverse_frequencies(self.cfg).astype(np.float32).tolist(),
                "instructions": [{**i, "args": [names.index(a) if isinstance(a, str) else a for a in i["args"]]}
                                 for i in self.tape],
                "values": [[v.buffer, v.offset, v.width] for v in self.values.values()],
                "buffer_widths": self.buffer_widths, "weights": self.weight_table}

    # -- values ---------------------------------------------------------------------------------------------------
    def _last_reads(self) -> dict[int, list[str]]:
        """Node index -> the values whose buffers no later node reads, directly or through a view."""
        owner: dict[str, str] = {}  # view -> the value whose buffer it is
        last: dict[str, int] = {}
        for index, node in enumerate(self.graph.nodes):
            for value in node.inputs:
                last[owner.get(value, value)] = index
            if node.op in ("split", "last_token"):
                for out in node.outputs:
                    owner[out] = owner.get(node.inputs[0], node.inputs[0])
        by_node: dict[int, list[str]] = {}
        for name, index in last.items():
            by_node.setdefault(index, []).append(name)
        return by_node

    def _new(self, name: str, width: int) -> None:
        pool = self.free.get(width, [])
        if pool:
            buffer = pool.pop()
        else:
            buffer = len(self.buffer_widths)
            self.buffer_widths.append(width)
        self.values[name] = Value(buffer, 0, width)

    def _width(self, name: str) -> int:
        return self.values[name].width

    # -- nodes ----------------------------------------------------------------------------------------------------
    def _lower(self, node: Node) -> None:
        op, ins, outs, attrs = node.op, node.inputs, node.outputs, node.attrs
        if op == "positions":
            return
        if op in ("last_token", "split"):
            self._view(node)
            return
        if op not in OPS:
            raise NativeDecodeUnsupported(f"native decode has no kernel for the IR op {op!r}")
        if op == "embed":
            weight = self._weight(attrs["weight"])
            self._new(outs[0], self.cfg.hidden_size)
            args = [-1, outs[0], weight]
        elif op == "linear":
            weight = self._weight(attrs["weight"])
            self._new(outs[0], int(self.weight_table[weight][1]))
            bias = self._weight(attrs["bias"]) if attrs.get("bias") else -1
            args = [ins[0], outs[0], weight, bias]
        elif op == "attention":
            self._new(outs[0], self.cfg.num_heads * self.cfg.head_dim)
            args = [*ins[:3], outs[0], attrs["layer"], int(attrs["rotary"])]
        elif op == "skip_rms_norm":
            for out in outs:
                self._new(out, self._width(ins[0]))
            args = [ins[0], outs[0], self._weight(attrs["weight"]), ins[1], outs[1]]
        elif op in ("rms_norm", "head_rms_norm"):
            self._new(outs[0], self._width(ins[0]))
            args = [ins[0], outs[0], self._weight(attrs["weight"])]
        else:  # add, silu_mul
            self._new(outs[0], self._width(ins[0]))
            args = [ins[0], outs[0], ins[1]]
        self.tape.append({"op": OPS[op], "args": args, "eps": attrs.get("eps", 0.0)})

    def _view(self, node: Node) -> None:
        source = self.values[node.inputs[0]]
        if node.op == "last_token":  # a decode step has one position a row
            self.values[node.outputs[0]] = source
            return
        offset = source.offset
        for out, size in zip(node.outputs, node.attrs["sizes"]):
            self.values[out] = Value(source.buffer, offset, size)
            offset += size

    # -- weights --------------------------------------------------------------------------------------------------
    def _weight(self, name: str) -> int:
        if name not in self.weights:
            tensor = self.graph.weights[name]
            if isinstance(tensor, QuantizedTensor):
                kind, (rows, cols), data = tensor.bits, tensor.shape, pack_panels(tensor)
            elif tensor.ndim == 1:  # norm weights, biases
                kind, (rows, cols), data = W_F32, (1, tensor.shape[0]), np.ascontiguousarray(tensor, np.float32)
            else:
                raise NativeDecodeUnsupported(f"native decode needs quantized linear weights (an ISQ scheme); {name} "
                                              "is not quantized")
            self.blob += bytes(-len(self.blob) % ALIGN)
            self.weights[name] = len(self.weight_table)
            self.weight_table.append([kind, int(rows), int(cols), len(self.blob)])
            self.blob += data.tobytes()
        return self.weights[name]


def pack_panels(qt: QuantizedTensor) -> np.ndarray:
    """[N, K] codes -> ops/native_decode.c's panels: per 16 rows, per block of 32, the codes as vpdpbusd reads them
    (4 inputs of each of the 16 rows a 64-byte chunk; 4-bit: inputs i and i + 16 share a byte) then the 16 fp16
    scales and 16 fp16 centres (w = scale (q - half) + centre)."""
    if qt.block_size != BLOCK or qt.shape[1] % BLOCK:
        raise NativeDecodeUnsupported(f"native decode needs blocks of {BLOCK} along K, not {qt.block_size}")
    n, blocks, half = qt.shape[0], qt.num_blocks, 2 ** (qt.bits - 1)
    rows = -n % PANEL
    codes = np.pad(unpack(qt.packed, qt.bits).reshape(n, blocks, BLOCK), ((0, rows), (0, 0), (0, 0)))
    scales = np.pad(qt.scales, ((0, rows), (0, 0)))
    zero = half if qt.zero_points is None else qt.zero_points.astype(np.float32)
    centres = np.pad((half - zero) * qt.scales, ((0, rows), (0, 0)))
    panels = codes.shape[0] // PANEL
    if qt.bits == 4:  # [panel, column, block, (low, high), chunk, input]
        split = codes.reshape(panels, PANEL, blocks, 2, 4, 4).astype(np.uint8)
        chunks = (split[:, :, :, 0] | split[:, :, :, 1] << 4).transpose(0, 2, 3, 1, 4)
    else:
        chunks = codes.reshape(panels, PANEL, blocks, 8, 4).astype(np.uint8).transpose(0, 2, 3, 1, 4)
    params = np.stack([scales, centres], -1).astype(np.float16).reshape(panels, PANEL, blocks, 2)
    params = params.transpose(0, 2, 3, 1)  # [panel, block, (scale, centre), column]
    return np.concatenate([chunks.reshape(panels, blocks, -1), params.reshape(panels, blocks, -1).view(np.uint8)], -1)


def compile_library(path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise NativeDecodeUnsupported("native decode compiles C: no C compiler (cc or gcc) on PATH")
    source = resources.files("mistralrs.ops").joinpath("native_decode.c")
    with resources.as_file(source) as source_path:
        subprocess.run([compiler, *COMPILE_FLAGS, str(source_path), "-o", str(path), "-lm"], check=True,
                       capture_output=True, text=True)

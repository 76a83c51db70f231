"""The artifact's native decode tape (compiler/targets/native_decode.py) run through its compiled library: one call
a decode step, on the same KV buffers the ONNX graph fills at prefill."""
import ctypes
import json

import numpy as np

from ...hardware import cpu_flags
from ..artifact import Artifact

INSTRUCTION = np.dtype([("op", np.int32), ("args", np.int32, 7), ("eps", np.float32)])


class NativeDecoder:
    def __init__(self, artifact: Artifact, files: dict, kv: dict[str, np.ndarray], max_rows: int, threads: int):
        program = json.loads(artifact.path(files["program"]).read_text())
        self.library = ctypes.CDLL(str(artifact.path(files["library"])))
        self.library.nd_create.restype = ctypes.c_void_p
        pointer, count = ctypes.c_void_p, ctypes.c_int
        self.library.nd_create.argtypes = [pointer, pointer, count, pointer, count, pointer, count, pointer, pointer,
                                           pointer]
        self.library.nd_step.argtypes = [pointer, count, pointer, pointer, pointer, ctypes.c_int64, pointer]
        self.library.nd_free.argtypes = [pointer]
        # the library reads these in place for its lifetime
        self.blob = np.fromfile(artifact.path(files["weights"]), np.uint8)
        self.weights = np.array(program["weights"], np.int64).reshape(-1, 4)
        instructions = np.zeros(len(program["instructions"]), INSTRUCTION)
        for row, instruction in zip(instructions, program["instructions"]):
            row["op"], row["eps"] = instruction["op"], instruction["eps"]
            row["args"][:] = -1
            row["args"][:len(instruction["args"])] = instruction["args"]
        values = np.array(program["values"], np.int32)
        widths = np.array(program["buffer_widths"], np.int32)
        config = program["config"]
        first = next(iter(kv.values()))
        self.max_len, self.slot_stride = first.shape[2], first[0].size
        self.max_rows = max_rows
        amx = {"amx_tile", "amx_int8"} <= cpu_flags()
        header = np.array([config["num_heads"], config["kv_heads"], config["head_dim"], max_rows, self.max_len,
                           config["logits"], threads, amx], np.int32)
        inv_freq = np.array(program["inv_freq"], np.float32)
        self.handle = self.library.nd_create(
            _ptr(header), _ptr(instructions), len(instructions), _ptr(values), len(values), _ptr(widths), len(widths),
            _ptr(self.weights), _ptr(self.blob), _ptr(inv_freq))
        self.kv = kv
        self._kv_pointers: dict[int, np.ndarray] = {}
        self.logits = np.empty((max_rows, int(values[config["logits"], 2])), np.float32)

    def step(self, first_slot: int, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """tokens, positions [rows]: each row's new token and its position (= the tokens already cached)."""
        rows = len(tokens)
        if rows > self.max_rows or positions.max() >= self.max_len:
            raise ValueError(f"native decode of {rows} rows at positions up to {positions.max()} exceeds its "
                             f"{self.max_rows} rows of {self.max_len} positions")
        tokens = np.ascontiguousarray(tokens, np.int64)
        positions = np.ascontiguousarray(positions, np.int64)
        self.library.nd_step(self.handle, rows, _ptr(tokens), _ptr(positions), _ptr(self._pointers(first_slot)),
                             self.slot_stride, _ptr(self.logits))
        return self.logits[:rows].copy()

    def _pointers(self, first_slot: int) -> np.ndarray:
        """Per layer, the key and value buffers' addresses at `first_slot` (the rows' slots follow it)."""
        if first_slot not in self._kv_pointers:
            layers = len(self.kv) // 2
            self._kv_pointers[first_slot] = np.array(
                [self.kv[f"{kind}_{layer}"][first_slot].ctypes.data for layer in range(layers)
                 for kind in ("key", "value")], np.uintp)
        return self._kv_pointers[first_slot]

    def __del__(self):
        if getattr(self, "handle", None):
            self.library.nd_free(self.handle)


def _ptr(array: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.ctypes.data)

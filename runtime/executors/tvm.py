"""Run a TVM artifact: the compiled Relax VM over a slot-major KV cache the executor owns.

The caches are k [max_slots, L, KV, D, C] and v [max_slots, L, KV, C, D] (C = max_seq_len rounded up to 16), so
the rows of a batch window first_slot .. first_slot + B - 1 are one contiguous block. Each window is handed to the
VM once as a zero-copy DLPack view; the forward function writes each step's keys and values into it in place.
CPU caches are 64-byte aligned numpy arrays; CUDA caches are torch tensors (only the TVM runtime libraries are
needed there: see scripts/tvm_runtime_bundle.py).
"""
import json
import logging
import os

import numpy as np

from ..artifact import Artifact, ArtifactError
from .base import ModelExecutor

logger = logging.getLogger("mistralrs.runtime")

ALIGNMENT = 64
POSITION_BLOCK = 16  # the forward function attends over a multiple of 16 cache positions


class TvmExecutor(ModelExecutor):
    def __init__(self, artifact: Artifact, max_slots: int, max_seq_len: int, threads: int):
        details = artifact.manifest["backend"]["details"]
        self.is_cuda = artifact.target.device == "cuda"
        tvm = _import_tvm(threads, artifact.target.arch if self.is_cuda else None)
        if details["tvm"] != tvm.__version__:
            raise ArtifactError(f"{artifact.root} was compiled by TVM {details['tvm']}; this runtime is TVM "
                                f"{tvm.__version__}: recompile it")
        self.tvm, self.max_slots, self.max_seq_len = tvm, max_slots, max_seq_len
        self.device = tvm.cuda(0) if self.is_cuda else tvm.cpu(0)
        from tvm.runtime.vm import VirtualMachine

        self.vm = VirtualMachine(tvm.runtime.load_module(str(artifact.path(details["library"]))), self.device)
        self.entry = self.vm[details["entry"]]
        self.weights = _load_weights(tvm, artifact.path(details["weights"]), self.device)
        cfg, length = artifact.config, -(-max_seq_len // POSITION_BLOCK) * POSITION_BLOCK
        k_shape = (max_slots, cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, length)
        v_shape = (max_slots, cfg.num_layers, cfg.num_kv_heads, length, cfg.head_dim)
        self.k_cache, self.v_cache = (_cuda_zeros(s) if self.is_cuda else _aligned_zeros(s) for s in (k_shape, v_shape))
        self._windows: dict[tuple[int, int], tuple] = {}
        logger.info("tvm executor on %s: %d weights, KV cache %d slots x %d tokens (%.0f MB)", self.device,
                    len(self.weights), max_slots, max_seq_len, 2 * 4 * np.prod(k_shape) / 1e6)

    def forward(self, first_slot: int, token_ids: np.ndarray, past_lengths: np.ndarray) -> np.ndarray:
        batch, seq = token_ids.shape
        total = int(past_lengths.max()) + seq
        if first_slot + batch > self.max_slots or total > self.max_seq_len:
            raise ValueError(f"window of {batch} slots at {first_slot} with {total} positions exceeds the cache "
                             f"({self.max_slots} slots x {self.max_seq_len})")
        ids = self.tvm.runtime.tensor(np.ascontiguousarray(token_ids, np.int32), self.device)
        past = self.tvm.runtime.tensor(np.ascontiguousarray(past_lengths, np.int32), self.device)
        blocks = self.tvm.runtime.ShapeTuple([-(-total // POSITION_BLOCK)])
        logits = self.entry(ids, past, *self._window(first_slot, batch), blocks, *self.weights)
        return logits.numpy()

    def _window(self, first_slot: int, batch: int) -> tuple:
        """The cache rows of a batch window as TVM tensors sharing the cache's memory."""
        key = (first_slot, batch)
        if key not in self._windows:
            rows = slice(first_slot, first_slot + batch)
            self._windows[key] = tuple(self.tvm.runtime.from_dlpack(c[rows]) for c in (self.k_cache, self.v_cache))
        return self._windows[key]

    def copy_slot(self, src: int, dst: int, length: int) -> None:
        self.k_cache[dst, ..., :length] = self.k_cache[src, ..., :length]
        self.v_cache[dst, :, :, :length] = self.v_cache[src, :, :, :length]


def _import_tvm(threads: int, cuda_arch: str | None):
    if cuda_arch:
        import torch  # noqa: F401  (first: its CUDA libraries satisfy libtvm_runtime_cuda's libcudart)
    os.environ.setdefault("TVM_NUM_THREADS", str(threads))  # read when TVM's thread pool starts
    import tvm

    if cuda_arch:
        _prepare_cuda(tvm, cuda_arch)
    return tvm


def _prepare_cuda(tvm, arch: str) -> None:
    """Make a runtime-only TVM (no compiler library) able to load a CUDA library: load its CUDA runtime library,
    which it does not do by itself, and compile the library's CUDA C with NVRTC for `arch` (TVM's own callback
    asks the compiler library for the current target)."""
    import tvm_ffi
    from tvm.support import nvcc

    if tvm.get_global_func("device_api.cuda", allow_missing=True) is None:
        from pathlib import Path

        from tvm.base import _LOADED_LIBS
        from tvm_ffi.libinfo import load_lib_ctypes

        runtime_dir = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
        _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes("tvm", "tvm_runtime_cuda", "RTLD_LOCAL",
                                                           extra_lib_paths=[runtime_dir])

    def compile_cuda(code: str) -> bytearray:
        return nvcc.compile_cuda(code, target_format="cubin", arch=arch, compiler="nvrtc")

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_cuda, override=True)


def _load_weights(tvm, path, device) -> list:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        order = json.loads(f.metadata()["order"])
        return [tvm.runtime.tensor(f.get_tensor(name), device) for name in order]


def _aligned_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """Zeros whose first element is ALIGNMENT-byte aligned (TVM's kernels assume it of every argument)."""
    count = int(np.prod(shape))
    raw = np.zeros(count * 4 + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + count * 4].view(np.float32).reshape(shape)


def _cuda_zeros(shape: tuple[int, ...]):
    import torch

    return torch.zeros(shape, dtype=torch.float32, device="cuda")

"""Inductor backend: export model_zoo's CachedDecoder and compile it ahead of time with AOTInductor.

Two .pt2 packages per artifact, `prefill.pt2` (dynamic batch and length) and `decode.pt2` (one token a row,
dynamic batch), plus on CUDA `decode_row.pt2` (batch 1, every matmul one fused ops/gemv.py kernel), share one
weight file by default: the packages are built without their constants, and the runtime loads
`weights.safetensors` once and hands the same tensors to all of them (`shared_weights=False` embeds them instead).
The decoder is model_zoo's CachedDecoder: q/k/v and gate/up packed into one matmul each, decode attention by
ops/decode_attention.py (a Triton kernel on CUDA). A .pt2 runs only under the torch version that built it, so CUDA
artifacts are compiled on the GPU machine; the manifest records the versions. ISQ is weight-only
(ops/weight_only.py): 8-bit schemes give int8 per output channel, 4-bit schemes int4 on the scheme's groups; the
LM head is int8 either way, the embedding table stays in `dtype`.

Before compiling, a one-Linear package is built and loaded in a child process: a package built by a C++ compiler
whose libstdc++ differs from the one torch runs with compiles fine and then segfaults at load (std::regex in
parse_device_str), which must be a compile error here, not a crash when serving.
"""
import contextlib
import functools
import logging
import subprocess
import sys
import tempfile
import time
import unittest.mock
from pathlib import Path

import torch

from ...hardware import TargetHardware
from ...model_zoo.cached_decoder import CachedDecoder
from ...model_zoo.decoder import DecoderLM
from ...ops.weight_only import Int8Linear, quantize_linears
from ..ir import Graph
from ..isq import IsqScheme
from .base import Backend, UnsupportedTarget

logger = logging.getLogger("mistralrs.compiler")

PREFILL_FILE = "prefill.pt2"
DECODE_FILE = "decode.pt2"
DECODE_ROW_FILE = "decode_row.pt2"
WEIGHTS_FILE = "weights.safetensors"
DTYPES = ("bfloat16", "float16", "float32")
EXAMPLE_CACHE_LEN = 64


class InductorBackend(Backend):
    """`dtype` defaults to bfloat16 on CUDA and float32 on CPU; `max_batch` bounds the exported batch dimension."""

    name = "inductor"
    consumes_checkpoint = True

    def __init__(self, dtype: str | None = None, max_batch: int = 256, shared_weights: bool = True,
                 matmul_accuracy: str | None = None):
        # matmul_accuracy is the onnxruntime backend's option; the CLI passes it to every backend
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        self.dtype, self.max_batch, self.shared_weights = dtype, max_batch, shared_weights
        self.target: TargetHardware | None = None
        self.weight_only: dict | None = None

    def version(self) -> str:
        return torch.__version__

    def options(self) -> dict:
        device = self.target.device if self.target else "cpu"
        options = {"dtype": self._dtype_name(), "max_batch": self.max_batch, "torch": torch.__version__,
                   "cxx": _cxx(), "weight_only": self.weight_only,
                   "entry_points": self._entry_points(),
                   "weights": WEIGHTS_FILE if self.shared_weights else None}
        if device == "cuda":
            options |= _cuda_versions()
        return options

    def _entry_points(self) -> dict:
        entries = {"prefill": PREFILL_FILE, "decode": DECODE_FILE}
        if self.target and self.target.device == "cuda":
            entries["decode_row"] = DECODE_ROW_FILE
        return entries

    def check_target(self, target: TargetHardware) -> None:
        if target.device == "cuda":
            if not torch.cuda.is_available():
                raise UnsupportedTarget(f"backend inductor compiles {target.label} on a machine with that GPU; "
                                        "this one has no CUDA device (.pt2 packages are tied to the building torch)")
            major, minor = torch.cuda.get_device_capability()
            if f"sm_{major}{minor}" != target.arch:
                raise UnsupportedTarget(f"this GPU is sm_{major}{minor}, not the requested {target.label}")
        check_toolchain(target.device)
        self.target = target

    def lower(self, graph: Graph, out_dir: Path) -> list[str]:
        raise UnsupportedTarget("backend inductor compiles from the checkpoint, not the IR graph")

    def lower_checkpoint(self, checkpoint, cfg, scheme, out_dir: Path) -> list[str]:
        from safetensors.torch import save_file

        device = "cuda" if self.target and self.target.device == "cuda" else "cpu"
        lm = DecoderLM.from_tensors(cfg, checkpoint.load_tensor, checkpoint.tensor_names())
        model = CachedDecoder(lm.to(device=device, dtype=getattr(torch, self._dtype_name()))).eval()
        if scheme is not None:
            self.weight_only = quantize_weights(model, scheme)
        shared = self.shared_weights
        if shared:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / WEIGHTS_FILE))
        exports = {"prefill": export_prefill, "decode": export_decode, "decode_row": export_decode_row}
        files = []
        for entry, name in self._entry_points().items():
            start = time.perf_counter()
            package(exports[entry](model, self.max_batch), out_dir / name, with_weights=not shared)
            logger.info("compiled %s in %.1fs", name, time.perf_counter() - start)
            files.append(name)
        return ([WEIGHTS_FILE] if shared else []) + files

    def _dtype_name(self) -> str:
        return self.dtype or ("bfloat16" if self.target and self.target.device == "cuda" else "float32")


def quantize_weights(model: CachedDecoder, scheme: IsqScheme) -> dict:
    """Weight-only ISQ in place: the decoder layers' linears at `scheme`, the LM head int8."""
    start = time.perf_counter()
    count = quantize_linears(model.layers, scheme)
    head = model.lm_head.weight if hasattr(model, "lm_head") else model.embed_tokens.weight
    model.lm_head = Int8Linear(head.data, None)
    layers = "int8 per output channel" if scheme.bits == 8 else f"int4, groups of {scheme.block_size}"
    logger.info("quantized %d linears (%s) and the LM head (int8) in %.1fs", count, layers,
                time.perf_counter() - start)
    return {"layers": layers, "lm_head": "int8 per output channel", "embedding": "unquantized"}


@functools.cache
def check_toolchain(device: str) -> None:
    """Once per process and device: build and load a one-Linear package in a child process; raise UnsupportedTarget
    if it cannot load."""
    script = ("import torch; m = torch.nn.Linear(32, 32).to(%r); x = torch.randn(2, 32, device=%r); "
              "p = torch._inductor.aoti_compile_and_package(torch.export.export(m, (x,)), package_path=%r); "
              "torch._inductor.aoti_load_package(p)(x)")
    with tempfile.TemporaryDirectory() as tmp:
        code = script % (device, device, str(Path(tmp) / "probe.pt2"))
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        how = f"died with signal {-result.returncode}" if result.returncode < 0 else "failed"
        tail = result.stderr.strip().splitlines()[-1:] or [""]
        raise UnsupportedTarget(f"AOTInductor cannot build loadable packages here: a one-Linear package built with the "
                                f"C++ compiler {_cxx()} {how} when loaded ({tail[0]}). If that compiler's libstdc++ "
                                f"differs from torch's, point CXX at the system compiler (e.g. CXX=/usr/bin/g++)")


def _cxx() -> str:
    import torch._inductor.config as inductor_config

    return inductor_config.cpp.cxx[-1]


def example_inputs(model: CachedDecoder, batch: int, seq: int):
    cfg, weight = model.cfg, model.embed_tokens.weight
    cache = (batch, cfg.num_layers, cfg.num_kv_heads, EXAMPLE_CACHE_LEN, cfg.head_dim)
    return (torch.zeros(batch, seq, dtype=torch.long, device=weight.device),
            torch.zeros(batch, dtype=torch.long, device=weight.device),
            torch.zeros(cache, dtype=weight.dtype, device=weight.device),
            torch.zeros(cache, dtype=weight.dtype, device=weight.device))


def export_prefill(model: CachedDecoder, max_batch: int) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    seq = torch.export.Dim("seq", min=2, max=model.rope_cos.shape[0])
    cache_len = torch.export.Dim("cache_len", min=2, max=model.rope_cos.shape[0])
    cache = {0: batch, 3: cache_len}
    with torch.no_grad():
        return torch.export.export(model, example_inputs(model, 2, 16), strict=False,
                                   dynamic_shapes=({0: batch, 1: seq}, {0: batch}, cache, cache))


def export_decode(model: CachedDecoder, max_batch: int) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    cache_len = torch.export.Dim("cache_len", min=2, max=model.rope_cos.shape[0])
    cache = {0: batch, 3: cache_len}
    with torch.no_grad():
        return torch.export.export(model, example_inputs(model, 2, 1), strict=False,
                                   dynamic_shapes=({0: batch}, {0: batch}, cache, cache))


def export_decode_row(model: CachedDecoder, max_batch: int) -> torch.export.ExportedProgram:
    """Batch 1 (static) through CachedDecoder's single-row path."""
    cache_len = torch.export.Dim("cache_len", min=2, max=model.rope_cos.shape[0])
    cache = {3: cache_len}
    model.single_row = True
    try:
        with torch.no_grad():
            return torch.export.export(model, example_inputs(model, 1, 1), strict=False,
                                       dynamic_shapes=(None, None, cache, cache))
    finally:
        model.single_row = False


def package(program: torch.export.ExportedProgram, path: Path, with_weights: bool) -> None:
    """AOT-compile into a .pt2; without its weights, the runtime passes them with load_constants."""
    import torch._inductor.config as inductor_config

    # a decode step stacks every layer's new key and value for one cache write: up to 64 inputs, that stack is one
    # gather kernel rather than a copy kernel per layer
    options = {"aot_inductor.package_constants_in_so": with_weights, "max_pointwise_cat_inputs": 64}
    with inductor_config.patch(options), _int_arrays_declared_where_used():
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))


@contextlib.contextmanager
def _int_arrays_declared_where_used():
    """Inductor's C++ wrapper caches each size/stride array declaration under the id() of the buffer it was written
    to; once that buffer is freed a new one can get its id, and the wrapper then names an array declared only in the
    dead buffer (`'int_array_242' was not declared in this scope`: three of about ten 1B-model compiles on the GPU
    machine). Declaring every array where it is used costs a few lines of C++."""
    from torch._inductor.codegen.cpp_wrapper_cpu import CppWrapperCpu

    if not hasattr(CppWrapperCpu, "_codegen_int_array_var_impl"):
        yield
        return

    def declare(self, int_array, writeline, known_statically=False, graph=None):
        return self._codegen_int_array_var_impl(int_array, writeline, known_statically)

    with unittest.mock.patch.object(CppWrapperCpu, "codegen_int_array_var", declare):
        yield


def _cuda_versions() -> dict:
    import triton

    major, minor = torch.cuda.get_device_capability()
    return {"cuda": torch.version.cuda, "triton": triton.__version__, "gpu_arch": f"sm_{major}{minor}",
            "gpu_name": torch.cuda.get_device_name()}

"""Apache TVM backend: lower the IR to Relax (tvm_lowering.py), compile one library per artifact.

`--target cpu[...]` compiles for LLVM at one x86-64 ISA level (mcpu), scheduled by our CPU rules (tvm_schedules.py):
plain `cpu` takes this machine's level, `cpu:x86_64+avx2` x86-64-v3 for portability. `--target cuda:sm_NN`
cross-compiles here (no GPU needed) with TVM's default CUDA pipeline (dlight schedules); the library holds CUDA C
that TVM compiles with NVRTC when it is loaded. Files: model.so (the VM executable), weights.safetensors (the
forward function's parameters, quantized weights packed as the ISQ level says).
"""
import json
import logging
import time
from pathlib import Path

import numpy as np

from ...hardware import TargetHardware, host_cpu
from ..ir import Graph
from .base import Backend, UnsupportedTarget

logger = logging.getLogger("mistralrs.compiler")

LIBRARY_FILE = "model.so"
WEIGHTS_FILE = "weights.safetensors"
ENTRY = "forward"
# x86-64 micro-architecture levels, newest first: LLVM cpu name -> the hardware.py ISA flags it requires, and the
# flags that pick it in a target string (cpu:x86_64+avx2 -> x86-64-v3)
X86_LEVELS = {
    "x86-64-v4": ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw"),
    "x86-64-v3": ("avx", "avx2", "fma", "f16c"),
    "x86-64": (),
}
LEVEL_FLAGS = {"x86-64-v4": ("avx512f", "avx512bw"), "x86-64-v3": ("avx2",), "x86-64": ()}


class TvmBackend(Backend):
    name = "tvm"

    def __init__(self, matmul_accuracy: str | None = None):
        # matmul_accuracy is the onnxruntime backend's option; the CLI passes it to every backend
        self.target: TargetHardware | None = None
        self.mcpu: str | None = None
        self.tvm_target: dict | None = None
        self.schedules: list[str] = []
        self.build_seconds: dict[str, float] = {}

    def version(self) -> str:
        import tvm

        return tvm.__version__

    def check_target(self, target: TargetHardware) -> None:
        if target.device == "cpu" and target.arch != "x86_64":
            raise UnsupportedTarget(f"backend tvm compiles cpu targets for x86_64 only, not {target.arch}")

    def resolve_target(self, target: TargetHardware) -> TargetHardware:
        """cpu: pick the x86-64 level (this CPU's, or the one `requires` names, e.g. cpu:x86_64+avx2 -> v3) and
        record every ISA flag it requires."""
        self.target = target
        if target.device != "cpu":
            self.tvm_target = {"kind": "cuda", "arch": target.arch}
            return target
        if target.requires:
            named = set(target.requires)
            self.mcpu = next(level for level, flags in LEVEL_FLAGS.items() if not flags or named & set(flags))
        else:
            host = set(host_cpu().requires)
            self.mcpu = next(level for level, flags in X86_LEVELS.items() if set(flags) <= host)
        self.tvm_target = {"kind": "llvm", "mcpu": self.mcpu}
        self.target = TargetHardware("cpu", target.arch, X86_LEVELS[self.mcpu])
        return self.target

    def details(self) -> dict:
        import tvm

        return {"tvm": tvm.__version__, "llvm": tvm.target.codegen.llvm_version_major(),
                "tvm_target": self.tvm_target, "mcpu": self.mcpu, "entry": ENTRY, "library": LIBRARY_FILE,
                "weights": WEIGHTS_FILE, "schedules": self.schedules, "build_seconds": self.build_seconds}

    def lower(self, graph: Graph, out_dir: Path) -> list[str]:
        from .tvm_lowering import TvmLowering

        if self.target is None:
            self.resolve_target(TargetHardware.parse("cpu"))
        start = time.perf_counter()
        mod, weights = TvmLowering(graph, "kn" if self.target.device == "cpu" else "nk").run()
        self.build_seconds["relax"] = round(time.perf_counter() - start, 2)
        executable = self._compile(mod)
        start = time.perf_counter()
        executable.export_library(str(out_dir / LIBRARY_FILE))
        self.build_seconds["export"] = round(time.perf_counter() - start, 2)
        _save_weights(weights, out_dir / WEIGHTS_FILE)
        return [LIBRARY_FILE, WEIGHTS_FILE]

    def _compile(self, mod):
        import tvm

        target = tvm.target.Target(self.tvm_target, host={"kind": "llvm"} if self.target.device == "cuda" else None)
        start = time.perf_counter()
        if self.target.device == "cpu":
            pipeline = cpu_pipeline(target)
            self.schedules = ["LinearRule", "AttentionRule", "RowwiseRule"]
        else:
            pipeline = "default"
            self.schedules = ["dlight.gpu: Matmul, GEMV, Reduction, GeneralReduction, Fallback (TVM default)"]
        executable = tvm.compile(mod, target=target, relax_pipeline=pipeline)
        self.build_seconds["compile"] = round(time.perf_counter() - start, 2)
        logger.info("tvm compiled %s in %.1fs", json.dumps(self.tvm_target), self.build_seconds["compile"])
        return executable


def cpu_pipeline(target):
    """TVM's CPU pipeline without operator fusion (each kernel is already one of ours), plus our schedules."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu
    from tvm.s_tir import dlight as dl

    from .tvm_schedules import cpu_rules

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod, _ctx):
        with target:
            passes = [relax.transform.LegalizeOps(), dl.ApplyDefaultSchedule(*cpu_rules()),
                      *cpu.dataflow_lower_passes(target), *cpu.finalize_passes(target)]
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def _save_weights(weights: dict[str, np.ndarray], path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(array) for name, array in weights.items()}, str(path),
              metadata={"order": json.dumps(list(weights))})

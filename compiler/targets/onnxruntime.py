"""ONNX Runtime backend: lower the IR to ONNX, let ORT optimize it once, save the optimized graph (its exactly-fp16
fp32 initializers stored as fp16, see onnx_fp16_storage.py)."""
import logging
from pathlib import Path

import onnxruntime as ort

from ...hardware import TargetHardware, cpu_flags
from ..ir import Graph
from .base import Backend, UnsupportedTarget
from .native_decode import ISA_FLAGS, LIBRARY_FILE, PROGRAM_FILE, WEIGHTS_FILE, NativeDecodeLowering
from .onnx_fp16_storage import FP16_FILE, store_exact_fp16
from .onnx_writer import OnnxWriter
from .onnxruntime_lowering import OnnxLowering

logger = logging.getLogger("mistralrs.compiler")

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"


# MatMulNBits accuracy_level per weight bit width: 0 computes in fp32 (exact on the dequantized weights; 8-bit
# weights then run as two 4-bit terms, see onnx_quantized.py), 4 quantizes activations to int8 (VNNI: about 1.4x
# faster at batch 1 and 2x at batch 8 here, but it flips near-ties, e.g. SmolLM2's first answer token).
ACCURACY_LEVELS = {"fp32": {4: 0, 8: 0}, "mixed": {4: 0, 8: 4}, "int8": {4: 4, 8: 4}}
DECODERS = ("onnxruntime", "native")  # what runs decode steps: the ONNX graph, or native_decode.py's tape


class OnnxRuntimeBackend(Backend):
    """`matmul_accuracy` (see ACCURACY_LEVELS) trades exactness for speed in the quantized matmuls; `decode`
    (DECODERS) picks what runs decode steps."""

    name = "onnxruntime"

    def __init__(self, matmul_accuracy: str = "fp32", decode: str = "onnxruntime"):
        if matmul_accuracy not in ACCURACY_LEVELS:
            raise ValueError(f"matmul accuracy must be one of {', '.join(ACCURACY_LEVELS)}, not {matmul_accuracy!r}")
        if decode not in DECODERS:
            raise ValueError(f"decode must be one of {', '.join(DECODERS)}, not {decode!r}")
        self.matmul_accuracy, self.decode = matmul_accuracy, decode
        self.fp16_initializers: list[str] = []

    def options(self) -> dict:
        return {"matmul_accuracy": self.matmul_accuracy, "decode": self.decode}

    def details(self) -> dict:
        """The fp32 initializers stored as fp16, which the runtime widens back when it creates the session, and the
        native decode files."""
        details = {}
        if self.fp16_initializers:
            details["fp16_initializers"] = {"file": FP16_FILE, "names": self.fp16_initializers}
        if self.decode == "native":
            details["native_decode"] = {"library": LIBRARY_FILE, "program": PROGRAM_FILE, "weights": WEIGHTS_FILE}
        return details

    def version(self) -> str:
        return ort.__version__

    def check_target(self, target: TargetHardware) -> None:
        if target.device != "cpu":
            raise UnsupportedTarget(
                f"backend onnxruntime compiles for cpu targets only (its GPU build is not installable here), not {target.label}"
            )

    def resolve_target(self, target: TargetHardware) -> TargetHardware:
        """Native decode runs AVX-512 VNNI code: the target must have it, and the artifact records that it needs it."""
        if self.decode != "native":
            return target
        named = set(target.requires) or set(cpu_flags())
        missing = [flag for flag in ISA_FLAGS if flag not in named]
        if target.arch != "x86_64" or missing:
            raise UnsupportedTarget(f"native decode needs an x86_64 CPU with {', '.join(ISA_FLAGS)}; target "
                                    f"{target.label} lacks {', '.join(missing) or 'x86_64'}")
        return TargetHardware(target.device, target.arch, tuple(dict.fromkeys([*target.requires, *ISA_FLAGS])))

    def lower(self, graph: Graph, out_dir: Path) -> list[str]:
        native = NativeDecodeLowering(graph).run(out_dir) if self.decode == "native" else []
        raw = out_dir / "unoptimized.onnx"
        writer = OnnxWriter(out_dir / "unoptimized.onnx.data")
        OnnxLowering(graph, writer, ACCURACY_LEVELS[self.matmul_accuracy]).run(raw)
        _optimize(raw, out_dir / MODEL_FILE)
        raw.unlink()
        (out_dir / "unoptimized.onnx.data").unlink()
        self.fp16_initializers = store_exact_fp16(out_dir / MODEL_FILE, DATA_FILE)
        return [MODEL_FILE, DATA_FILE] + ([FP16_FILE] if self.fp16_initializers else []) + native


def _optimize(raw: Path, optimized: Path) -> None:
    """Run ORT's portable graph optimizations once, here, so serving starts with them disabled."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimized)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", DATA_FILE)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])

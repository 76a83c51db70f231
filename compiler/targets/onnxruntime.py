"""ONNX Runtime backend: lower the IR to ONNX, let ORT optimize it once, save the optimized graph (its exactly-fp16
fp32 initializers stored as fp16, see onnx_fp16_storage.py)."""
import logging
from pathlib import Path

import onnxruntime as ort

from ...hardware import TargetHardware
from ..ir import Graph
from .base import Backend, UnsupportedTarget
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


class OnnxRuntimeBackend(Backend):
    """`matmul_accuracy` (see ACCURACY_LEVELS) trades exactness for speed in the quantized matmuls."""

    name = "onnxruntime"

    def __init__(self, matmul_accuracy: str = "fp32"):
        if matmul_accuracy not in ACCURACY_LEVELS:
            raise ValueError(f"matmul accuracy must be one of {', '.join(ACCURACY_LEVELS)}, not {matmul_accuracy!r}")
        self.matmul_accuracy = matmul_accuracy
        self.fp16_initializers: list[str] = []

    def options(self) -> dict:
        return {"matmul_accuracy": self.matmul_accuracy}

    def details(self) -> dict:
        """The fp32 initializers stored as fp16, which the runtime widens back when it creates the session."""
        if not self.fp16_initializers:
            return {}
        return {"fp16_initializers": {"file": FP16_FILE, "names": self.fp16_initializers}}

    def version(self) -> str:
        return ort.__version__

    def check_target(self, target: TargetHardware) -> None:
        if target.device != "cpu":
            raise UnsupportedTarget(
                f"backend onnxruntime compiles for cpu targets only (its GPU build is not installable here), not {target.label}"
            )

    def lower(self, graph: Graph, out_dir: Path) -> list[str]:
        raw = out_dir / "unoptimized.onnx"
        writer = OnnxWriter(out_dir / "unoptimized.onnx.data")
        OnnxLowering(graph, writer, ACCURACY_LEVELS[self.matmul_accuracy]).run(raw)
        _optimize(raw, out_dir / MODEL_FILE)
        raw.unlink()
        (out_dir / "unoptimized.onnx.data").unlink()
        self.fp16_initializers = store_exact_fp16(out_dir / MODEL_FILE, DATA_FILE)
        return [MODEL_FILE, DATA_FILE] + ([FP16_FILE] if self.fp16_initializers else [])


def _optimize(raw: Path, optimized: Path) -> None:
    """Run ORT's portable graph optimizations once, here, so serving starts with them disabled."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimized)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", DATA_FILE)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])

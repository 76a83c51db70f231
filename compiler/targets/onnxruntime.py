"""ONNX Runtime backend: lower the IR to ONNX, let ORT optimize it once, save the optimized graph."""
import logging
from pathlib import Path

import onnxruntime as ort

from ...hardware import TargetHardware
from ..ir import Graph
from .base import Backend, UnsupportedTarget
from .onnx_writer import OnnxWriter
from .onnxruntime_lowering import OnnxLowering

logger = logging.getLogger("mistralrs.compiler")

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def version(self) -> str:
        return ort.__version__

    def check_target(self, target: TargetHardware) -> None:
        if target.device != "cpu":
            raise UnsupportedTarget(
                f"backend onnxruntime compiles for cpu targets only (its GPU build is not installable here), not {target.label}"
            )

    def lower(self, graph: Graph, out_dir: Path) -> list[str]:
        raw = out_dir / "unoptimized.onnx"
        OnnxLowering(graph, OnnxWriter(out_dir / "unoptimized.onnx.data")).run(raw)
        _optimize(raw, out_dir / MODEL_FILE)
        raw.unlink()
        (out_dir / "unoptimized.onnx.data").unlink()
        return [MODEL_FILE, DATA_FILE]


def _optimize(raw: Path, optimized: Path) -> None:
    """Run ORT's portable graph optimizations once, here, so serving starts with them disabled."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimized)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", DATA_FILE)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])

"""Backend registry: `--backend NAME` -> a Backend."""
from .base import Backend, UnsupportedTarget

NOT_INSTALLABLE = {
    "tensorrt": "TensorRT is not available: its wheels are only served from NVIDIA's own index, which these machines cannot reach",
}


def available_backends() -> list[str]:
    return ["onnxruntime", "inductor", "tvm"]


def get_backend(name: str, **options) -> Backend:
    key = name.strip().lower()
    if key == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(**options)
    if key == "inductor":
        from .inductor import InductorBackend

        return InductorBackend(**options)
    if key == "tvm":
        from .tvm import TvmBackend

        return TvmBackend(**options)
    reason = NOT_INSTALLABLE.get(key, f"unknown backend {name!r}")
    raise UnsupportedTarget(f"{reason}; available backends: {', '.join(available_backends())}")

"""Executor registry: an artifact's backend -> the ModelExecutor that runs it."""
from ..artifact import Artifact, ArtifactError
from .base import ModelExecutor


def create_executor(artifact: Artifact, max_slots: int, max_seq_len: int, threads: int) -> ModelExecutor:
    if artifact.backend == "onnxruntime":
        from .onnxruntime import OnnxRuntimeExecutor

        return OnnxRuntimeExecutor(artifact, max_slots, max_seq_len, threads)
    if artifact.backend == "inductor":
        from .inductor import InductorExecutor

        return InductorExecutor(artifact, max_slots, max_seq_len, threads)
    if artifact.backend == "tvm":
        from .tvm import TvmExecutor

        return TvmExecutor(artifact, max_slots, max_seq_len, threads)
    raise ArtifactError(f"artifact backend {artifact.backend!r} is not supported by this runtime; "
                        "supported: onnxruntime, inductor, tvm")

"""Session-wide fixtures: the bundled SmolLM2 GGUF and its artifacts, compiled once per test run."""
from pathlib import Path

import pytest

from mistralrs.compiler.compile import CompileOptions, compile_checkpoint
from mistralrs.default_model import default_model_path


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return default_model_path()


@pytest.fixture(scope="session")
def smollm2_artifact(smollm2_gguf, tmp_path_factory):
    """smollm2_artifact(isq, backend="onnxruntime") -> a `--target cpu` artifact dir; each (ISQ level, backend) is
    compiled once per session."""
    compiled: dict[tuple[str | None, str], Path] = {}
    root = tmp_path_factory.mktemp("smollm2")

    def get(isq: str | None = None, backend: str = "onnxruntime") -> Path:
        if (isq, backend) not in compiled:
            out = root / f"smollm2-{backend}-{isq or 'f32'}"
            compile_checkpoint(CompileOptions(model=str(smollm2_gguf), output=out, isq=isq, backend=backend,
                                              progress=False))
            compiled[isq, backend] = out
        return compiled[isq, backend]

    return get

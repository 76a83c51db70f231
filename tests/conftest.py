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
    """smollm2_artifact(isq, backend="onnxruntime", decode="onnxruntime") -> a `--target cpu` artifact dir; each
    (ISQ level, backend, decode) is compiled once per session."""
    compiled: dict[tuple[str | None, str, str], Path] = {}
    root = tmp_path_factory.mktemp("smollm2")

    def get(isq: str | None = None, backend: str = "onnxruntime", decode: str = "onnxruntime") -> Path:
        if (isq, backend, decode) not in compiled:
            out = root / f"smollm2-{backend}-{isq or 'f32'}-{decode}"
            options = {"decode": decode} if decode != "onnxruntime" else {}
            compile_checkpoint(CompileOptions(model=str(smollm2_gguf), output=out, isq=isq, backend=backend,
                                              progress=False, backend_options=options))
            compiled[isq, backend, decode] = out
        return compiled[isq, backend, decode]

    return get

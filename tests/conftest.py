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
    """smollm2_artifact(isq) -> artifact dir; each ISQ level is compiled once per session."""
    compiled: dict[str | None, Path] = {}
    root = tmp_path_factory.mktemp("smollm2")

    def get(isq: str | None = None) -> Path:
        if isq not in compiled:
            out = root / f"smollm2-{isq or 'f32'}"
            compile_checkpoint(CompileOptions(model=str(smollm2_gguf), output=out, isq=isq, progress=False))
            compiled[isq] = out
        return compiled[isq]

    return get


@pytest.fixture(scope="session")
def smollm2_tvm_artifact(smollm2_gguf, tmp_path_factory):
    """smollm2_tvm_artifact(isq) -> a `--backend tvm --target cpu` artifact dir, each ISQ level compiled once."""
    compiled: dict[str | None, Path] = {}
    root = tmp_path_factory.mktemp("smollm2-tvm")

    def get(isq: str | None = None) -> Path:
        if isq not in compiled:
            out = root / f"smollm2-tvm-{isq or 'f32'}"
            compile_checkpoint(CompileOptions(model=str(smollm2_gguf), output=out, isq=isq, backend="tvm",
                                              keep_source=False, progress=False))
            compiled[isq] = out
        return compiled[isq]

    return get

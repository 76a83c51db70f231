"""Compiler fixtures: tiny random checkpoints and their artifacts (each built once per session), and the
transformers view of the real SmolLM2 GGUF."""
from pathlib import Path

import pytest
import torch
from tiny_models import SPECS, compile_tiny, random_model, save_checkpoint, train_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="session")
def prompt(tiny_tokenizer) -> list[int]:
    """The tiny models' test prompt."""
    return tiny_tokenizer.encode("hello world, the quick brown fox").ids


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_tokenizer):
    """tiny_checkpoint(name) -> HF directory of SPECS[name], saved once per session."""
    saved: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("tiny-hf")

    def get(name: str) -> Path:
        if name not in saved:
            model = random_model(SPECS[name], seed=list(SPECS).index(name))
            saved[name] = save_checkpoint(root / name, model, tiny_tokenizer)
        return saved[name]

    return get


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_checkpoint):
    """tiny_artifact(name, isq=None, disabled_passes=frozenset(), matmul_accuracy="fp32", backend="onnxruntime",
    target="cpu", decode="onnxruntime") -> artifact dir, compiled once per session."""
    compiled: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("tiny-artifacts")

    def get(name: str, isq: str | None = None, disabled_passes: frozenset[str] = frozenset(),
            matmul_accuracy: str = "fp32", backend: str = "onnxruntime", target: str = "cpu",
            decode: str = "onnxruntime") -> Path:
        key = (name, isq, frozenset(disabled_passes), matmul_accuracy, backend, target, decode)
        if key not in compiled:
            out = root / f"{name}-{isq or 'f32'}-{len(compiled)}"
            compile_tiny(tiny_checkpoint(name), out, isq, frozenset(disabled_passes), matmul_accuracy, backend, target,
                         decode)
            compiled[key] = out
        return compiled[key]

    return get


@pytest.fixture(scope="session")
def smollm2_transformers(smollm2_gguf) -> tuple[object, dict[str, torch.Tensor]]:
    """(config, tensors): what transformers' from_pretrained(gguf_file=...) loads, without the accelerate it insists
    on; the tensors are the GGUF's dequantized weights under HF names."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(smollm2_gguf), return_tensors=True, model_to_load=model)["tensors"]
    return config, tensors

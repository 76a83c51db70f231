"""What the compiler refuses, and that it says why: architectures, backends, targets."""
import json
import shutil

import pytest
from tiny_models import compile_tiny

from mistralrs.compiler.compile import CompileOptions, compile_checkpoint
from mistralrs.compiler.loaders import load_checkpoint
from mistralrs.compiler.targets import UnsupportedTarget, available_backends, get_backend
from mistralrs.hardware import TargetHardware
from mistralrs.model_zoo.config import FAMILIES, DecoderConfig, UnsupportedArchitecture

SUPPORTED = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]


def test_supported_families():
    assert sorted(FAMILIES) == SUPPORTED


def test_unsupported_architecture_lists_the_supported_ones(tmp_path, tiny_checkpoint):
    checkpoint = shutil.copytree(tiny_checkpoint("llama-untied"), tmp_path / "gpt2")
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(architectures=["GPT2LMHeadModel"], model_type="gpt2")
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitecture, match="unsupported architecture.*GPT2LMHeadModel") as error:
        compile_tiny(checkpoint, tmp_path / "out")
    assert all(name in str(error.value) for name in SUPPORTED)
    assert not (tmp_path / "out").exists()


def test_config_without_architectures_names_its_model_type():
    with pytest.raises(UnsupportedArchitecture, match=r"'gpt2'.*supported: LlamaForCausalLM"):
        DecoderConfig.from_hf({"model_type": "gpt2"})


def test_unsupported_rope_scaling_is_named(tiny_checkpoint):
    config = load_checkpoint(tiny_checkpoint("llama-untied")).config
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    with pytest.raises(UnsupportedArchitecture, match="unsupported rope scaling 'yarn'.*llama3"):
        DecoderConfig.from_hf(config)


@pytest.mark.parametrize("name", ["tensorrt", "TensorRT", " tensorrt "])
def test_tensorrt_backend_is_not_available(name):
    with pytest.raises(UnsupportedTarget, match="TensorRT is not available.*available backends: onnxruntime"):
        get_backend(name)


def test_unknown_backend_names_the_available_ones():
    available = "available backends: onnxruntime, inductor, tvm$"
    with pytest.raises(UnsupportedTarget, match=f"unknown backend 'tflite'; {available}"):
        get_backend("tflite")
    assert available_backends() == ["onnxruntime", "inductor", "tvm"]


def options(tmp_path, **overrides) -> CompileOptions:
    """Options for a model that does not exist: whatever fails must fail before the checkpoint is opened."""
    return CompileOptions(model=str(tmp_path / "no-such-model"), output=tmp_path / "out", progress=False, **overrides)


def test_compile_with_tensorrt_fails_at_once(tmp_path):
    with pytest.raises(UnsupportedTarget, match="TensorRT is not available"):
        compile_checkpoint(options(tmp_path, backend="tensorrt"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["cuda:sm_90", "cuda:sm_80"])
def test_onnxruntime_refuses_cuda_targets(tmp_path, target):
    with pytest.raises(UnsupportedTarget, match=f"onnxruntime compiles for cpu targets only.*not {target}"):
        compile_checkpoint(options(tmp_path, target=target))
    with pytest.raises(UnsupportedTarget, match=target):
        get_backend("onnxruntime").check_target(TargetHardware.parse(target))


@pytest.mark.parametrize("target", ["tpu", "cuda:90", "cuda"])
def test_malformed_target_is_refused(tmp_path, target):
    with pytest.raises(ValueError, match="unknown target"):
        compile_checkpoint(options(tmp_path, target=target))

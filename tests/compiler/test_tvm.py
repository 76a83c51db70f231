"""The tvm backend: the IR lowered through Relax to one library per artifact.

`--target cpu` (fp32 parity of every family against eager and transformers is test_compiler_parity.py, run for
every backend): batched decode of rows with different lengths, ISQ levels against the eager
decoder on the same quantized weights, SmolLM2 answering " Paris" at every ISQ level.
`--target cuda:sm_90`: cross-compiled here (no GPU), the library carries CUDA code, loading it here fails cleanly.
"""
import json

import numpy as np
import pytest
from tiny_models import assert_parity, batched_decode, eager_model, executor_for, greedy_run, teacher_forced

from mistralrs.cli import main
from mistralrs.compiler.isq import parse_isq
from mistralrs.compiler.pipeline import PASS_NAMES
from mistralrs.compiler.targets.base import UnsupportedTarget
from mistralrs.hardware import IncompatibleTarget, host_cpu
from mistralrs.runtime.artifact import open_artifact
from mistralrs.runtime.executors import create_executor
from mistralrs.runtime.tokenizer import Tokenizer

TOLERANCE = 1e-3
ISQ_LEVELS = [None, "Q8_0", "Q4_1", "Q4K"]


@pytest.fixture(scope="module")
def tvm_artifact(tiny_artifact):
    return lambda name, isq=None, target="cpu": tiny_artifact(name, isq, backend="tvm", target=target)


@pytest.mark.parametrize("family", ["llama-untied", "qwen3"])
def test_batched_decode_of_rows_with_different_lengths(family, tvm_artifact, tiny_checkpoint, prompt):
    prompts = [prompt, prompt[:3], prompt[2:7]]
    executor = executor_for(tvm_artifact(family), max_slots=len(prompts))
    model = eager_model(tiny_checkpoint(family))
    steps = list(batched_decode(executor, prompts, 6))
    generated = np.stack([rows.argmax(-1) for rows in steps], axis=1)
    for row, p in enumerate(prompts):
        reference = teacher_forced(model, p, generated[row].tolist())
        assert np.abs(np.stack([rows[row] for rows in steps]) - reference).max() < TOLERANCE, row


def test_chunked_prefill_and_copy_slot(tvm_artifact, prompt):
    executor = executor_for(tvm_artifact("qwen2"), max_slots=3)
    one_shot = executor.forward(0, np.array([prompt]), np.array([0]))[0]
    executor.forward(1, np.array([prompt[:4]]), np.array([0]))
    chunked = executor.forward(1, np.array([prompt[4:]]), np.array([4]))[0]
    assert np.abs(chunked - one_shot).max() < 1e-4
    executor.copy_slot(0, 2, len(prompt))
    token = np.array([[int(one_shot.argmax())]] * 2)
    rows = executor.forward(1, token, np.array([len(prompt)] * 2))
    assert np.abs(rows[0] - rows[1]).max() < 1e-4


def test_unfused_graph_matches_eager(tiny_artifact, tiny_checkpoint, prompt):
    """Every fusion pass off: the plain IR ops (add, rms_norm, rotary, positions, separate projections) lower too."""
    artifact = tiny_artifact("qwen3", disabled_passes=frozenset(PASS_NAMES[:-1]), backend="tvm")
    tokens, logits = greedy_run(executor_for(artifact), prompt)
    assert_parity(logits, teacher_forced(eager_model(tiny_checkpoint("qwen3")), prompt, tokens), tokens)


@pytest.mark.parametrize("isq", ["Q4K", "Q8_0", "Q4_0"])
def test_isq_matches_eager_on_the_quantized_weights(isq, tvm_artifact, tiny_checkpoint, prompt):
    tokens, logits = greedy_run(executor_for(tvm_artifact("qwen2", isq)), prompt)
    reference = teacher_forced(eager_model(tiny_checkpoint("qwen2"), parse_isq(isq)), prompt, tokens)
    assert_parity(logits, reference, tokens)


def test_quantized_weights_stay_packed(tvm_artifact):
    from safetensors import safe_open

    with safe_open(str(tvm_artifact("llama-untied", "Q4K") / "weights.safetensors"), "numpy") as f:
        codes = f.get_tensor("packed.0.qkv_proj.weight.codes")
        assert codes.dtype == np.uint8 and codes.shape == (64, 128 // 2)  # [K, N / 2]: two 4-bit codes a byte
        assert f.get_tensor("packed.0.qkv_proj.weight.scales").dtype == np.float32


def test_manifest_records_tvm_and_the_target(tvm_artifact):
    manifest = open_artifact(tvm_artifact("llama-untied")).manifest
    details = manifest["backend"]["details"]
    assert manifest["backend"]["name"] == "tvm" and details["tvm"].startswith("0.27")
    assert details["tvm_target"]["kind"] == "llvm" and details["mcpu"].startswith("x86-64")
    assert set(manifest["target"]["requires"]) <= set(host_cpu().requires)
    assert "LinearRule" in details["schedules"]


def test_portable_cpu_target_pins_x86_64_v3(tvm_artifact):
    if "avx2" not in host_cpu().requires:
        pytest.skip("this CPU has no AVX2")
    manifest = open_artifact(tvm_artifact("llama-tied", target="cpu:x86_64+avx2")).manifest
    assert manifest["backend"]["details"]["mcpu"] == "x86-64-v3"
    assert manifest["target"]["requires"] == ["avx", "avx2", "fma", "f16c"]


def test_rejects_other_cpu_architectures(tiny_checkpoint, tmp_path):
    from tiny_models import compile_tiny

    with pytest.raises(UnsupportedTarget, match="x86_64"):
        compile_tiny(tiny_checkpoint("llama-tied"), tmp_path / "out", backend="tvm", target="cpu:aarch64")


# --- CUDA, cross-compiled on this CPU-only machine -----------------------------------------------------------

@pytest.fixture(scope="module")
def cuda_artifact(tvm_artifact):
    return tvm_artifact("llama-tied", "Q4K", target="cuda:sm_90")


def test_cuda_cross_compile_carries_cuda_code(cuda_artifact):
    manifest = json.loads((cuda_artifact / "manifest.json").read_text())
    assert manifest["target"] == {"device": "cuda", "arch": "sm_90", "requires": []}
    assert manifest["backend"]["details"]["tvm_target"] == {"kind": "cuda", "arch": "sm_90"}
    library = (cuda_artifact / "model.so").read_bytes()
    assert b"__global__" in library and b"blockIdx" in library  # CUDA C, compiled by NVRTC at load time


def test_cuda_artifact_fails_cleanly_here(cuda_artifact, capsys):
    with pytest.raises(IncompatibleTarget, match="no CUDA GPU"):
        open_artifact(cuda_artifact)
    assert main(["serve", "--artifact", str(cuda_artifact)]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


# --- SmolLM2-135M-Instruct ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_prompt(smollm2_artifact) -> tuple[Tokenizer, list[int]]:
    tokenizer = Tokenizer.from_dir(open_artifact(smollm2_artifact("Q4K", backend="tvm")).tokenizer_dir)
    return tokenizer, tokenizer.encode("The capital of France is", add_special_tokens=False)


@pytest.mark.parametrize("isq", ISQ_LEVELS, ids=lambda isq: isq or "F32")
def test_smollm2_answers_paris_at_every_isq_level(isq, smollm2_artifact, smollm2_prompt):
    tokenizer, ids = smollm2_prompt
    executor = create_executor(open_artifact(smollm2_artifact(isq, backend="tvm")), 1, 64, threads=2)
    tokens, _ = greedy_run(executor, ids, steps=1)
    assert tokenizer.decode(tokens).startswith(" Paris")

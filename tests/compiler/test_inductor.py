"""The inductor backend (AOTInductor .pt2 packages): `--target cpu` against the eager decoder here, and in bf16 on
CUDA (on the GPU machine, `-m gpu`) against the same cached decoder run eagerly; weight-only int8 / int4 (ISQ)
top-1 agreement with the unquantized model, printed and held to a floor.

AOTInductor compiles C++ for each package, about a minute per package on a 2-core machine, hence `slow`.
"""
import numpy as np
import pytest
import torch
from tiny_models import batched_decode, eager_model, greedy_run, teacher_forced

from mistralrs.compiler.compile import CompileOptions, compile_checkpoint
from mistralrs.compiler.spot_check import teacher_forced_logits
from mistralrs.model_zoo.cached_decoder import CachedDecoder
from mistralrs.runtime.artifact import open_artifact
from mistralrs.runtime.executors import create_executor

TOLERANCE = 1e-3
GPU_STEPS = 32


ISQ_FLOORS = {"Q8_0": 0.9, "Q4K": 0.6}  # tiny random models have many near ties; SmolLM2-scale checks are in bench


def compile_inductor(checkpoint, output, target: str, isq: str | None = None) -> dict:
    return compile_checkpoint(CompileOptions(model=str(checkpoint), output=output, backend="inductor", target=target,
                                             isq=isq, keep_source=False, progress=False))


def agreement(artifact, prompt: list[int], reference_tokens: list[int]) -> float:
    """Teacher-forced top-1 agreement of the artifact with a reference greedy continuation."""
    executor = create_executor(open_artifact(artifact), 1, 64, threads=2)
    logits = teacher_forced_logits(executor, prompt, reference_tokens)
    return float((logits.argmax(-1) == np.array(reference_tokens)).mean())


@pytest.fixture(scope="module")
def cpu_artifact(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("inductor") / "llama-untied"
    compile_inductor(tiny_checkpoint("llama-untied"), out, "cpu")
    return out


@pytest.mark.parametrize("name", ["llama-tied", "llama-untied", "qwen2", "qwen3"])
def test_cached_decoder_matches_the_decoder(name, tiny_checkpoint, prompt):
    """CachedDecoder's rearranged weights (packed and reordered rows, folded norms), a prefill and then decode steps
    through both decode paths (batched, and single-row: ops/gemv.py's reference on CPU) give DecoderLM's logits and
    the same cache contents."""
    lm = eager_model(tiny_checkpoint(name))
    generated = [5, 9, 14]
    reference = torch.from_numpy(teacher_forced(lm, prompt, generated + [0]))
    model = CachedDecoder(lm).eval()
    cfg = model.cfg
    caches = {path: [torch.zeros(1, cfg.num_layers, cfg.num_kv_heads, 32, cfg.head_dim) for _ in range(2)]
              for path in ("batched", "single")}
    with torch.no_grad():
        for path, cache in caches.items():
            model.single_row = path == "single"
            logits = [model(torch.tensor([prompt]), torch.tensor([0]), *cache)[0]]
            for step, token in enumerate(generated):
                logits.append(model(torch.tensor([[token]]), torch.tensor([len(prompt) + step]), *cache)[0])
            assert (torch.stack(logits) - reference).abs().max() < TOLERANCE * reference.abs().max(), path
    for a, b in zip(*caches.values()):
        assert (a - b).abs().max() < 1e-5


@pytest.mark.slow
def test_cpu_manifest_records_the_packages(cpu_artifact):
    manifest = open_artifact(cpu_artifact).manifest
    assert manifest["backend"]["name"] == "inductor"
    assert set(manifest["backend"]["graph_files"]) == {"weights.safetensors", "prefill.pt2", "decode.pt2"}
    assert manifest["backend"]["options"]["torch"] == torch.__version__


@pytest.mark.slow
def test_cpu_matches_eager_decoder(cpu_artifact, tiny_checkpoint, prompt):
    executor = create_executor(open_artifact(cpu_artifact), 1, 48, threads=2)
    tokens, logits = greedy_run(executor, prompt)
    reference = teacher_forced(eager_model(tiny_checkpoint("llama-untied")), prompt, tokens)
    assert np.abs(logits - reference).max() < TOLERANCE
    assert reference.argmax(-1).tolist() == tokens


@pytest.mark.slow
def test_cpu_batched_decode_with_different_lengths(cpu_artifact, tiny_checkpoint, prompt):
    prompts = [prompt, prompt[:3], prompt[2:7]]
    executor = create_executor(open_artifact(cpu_artifact), len(prompts), 48, threads=2)
    model = eager_model(tiny_checkpoint("llama-untied"))
    steps = list(batched_decode(executor, prompts, 4))
    generated = np.stack([rows.argmax(-1) for rows in steps], axis=1)  # [B, 5]
    for row, p in enumerate(prompts):
        reference = teacher_forced(model, p, generated[row].tolist())
        compiled = np.stack([rows[row] for rows in steps])
        assert np.abs(compiled - reference).max() < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("isq", ISQ_FLOORS)
def test_cpu_weight_only_isq_agrees_with_fp32(isq, cpu_artifact, tiny_checkpoint, prompt, tmp_path):
    out = tmp_path / isq
    manifest = compile_inductor(tiny_checkpoint("llama-untied"), out, "cpu", isq)
    assert manifest["backend"]["options"]["weight_only"]["lm_head"] == "int8 per output channel"
    tokens, _ = greedy_run(create_executor(open_artifact(cpu_artifact), 1, 64, threads=2), prompt, steps=GPU_STEPS)
    score = agreement(out, prompt, tokens)
    print(f"inductor cpu {isq}: top-1 agreement with fp32 over {len(tokens)} steps = {score:.3f}")
    assert score >= ISQ_FLOORS[isq]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("isq", ISQ_FLOORS)
def test_cuda_weight_only_isq_agrees_with_bf16(isq, tiny_checkpoint, tmp_path, prompt):
    out = tmp_path / isq
    compile_inductor(tiny_checkpoint("llama-tied"), out, "cuda:" + _gpu_arch(), isq)
    tokens = eager_greedy_bf16(tiny_checkpoint("llama-tied"), prompt, GPU_STEPS)
    score = agreement(out, prompt, tokens)
    print(f"inductor cuda {isq}: top-1 agreement with bf16 eager over {len(tokens)} steps = {score:.3f}")
    assert score >= ISQ_FLOORS[isq]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_greedy_matches_eager(tiny_checkpoint, tmp_path, prompt):
    """32 greedy steps in bf16 (CUDA graphs on): the same tokens as the eager cached decoder in bf16."""
    out = tmp_path / "cuda"
    compile_inductor(tiny_checkpoint("llama-tied"), out, "cuda:" + _gpu_arch())
    executor = create_executor(open_artifact(out), 1, 64, threads=1)
    tokens, _ = greedy_run(executor, prompt, steps=GPU_STEPS)
    assert tokens == eager_greedy_bf16(tiny_checkpoint("llama-tied"), prompt, GPU_STEPS)
    assert len(set(tokens)) > 1


def eager_greedy_bf16(checkpoint, prompt: list[int], steps: int) -> list[int]:
    model = CachedDecoder(eager_model(checkpoint).to("cuda", torch.bfloat16)).eval()
    cfg = model.cfg
    cache = [torch.zeros(1, cfg.num_layers, cfg.num_kv_heads, 64, cfg.head_dim, dtype=torch.bfloat16, device="cuda")
             for _ in range(2)]
    ids, tokens = torch.tensor([prompt], device="cuda"), []
    with torch.no_grad():
        for step in range(steps + 1):
            past = torch.tensor([0 if step == 0 else len(prompt) + step - 1], device="cuda")
            tokens.append(int(model(ids, past, *cache)[0].argmax()))
            ids = torch.tensor([[tokens[-1]]], device="cuda")
    return tokens


def _gpu_arch() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}"



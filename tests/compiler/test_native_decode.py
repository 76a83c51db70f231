"""Native decode (compiler/targets/native_decode.py + ops/native_decode.c): decode steps against the same artifact's
ONNX graph with exact (fp32-activation) matmuls, on tiny random checkpoints of each family."""
import json

import numpy as np
import pytest
from tiny_models import batched_decode, executor_for, greedy_run, max_abs

from mistralrs.compiler.targets import UnsupportedTarget
from mistralrs.compiler.targets.native_decode import ISA_FLAGS, NativeDecodeUnsupported
from mistralrs.hardware import cpu_flags

pytestmark = pytest.mark.skipif(not set(ISA_FLAGS) <= cpu_flags(), reason="needs AVX-512 VNNI")  # CI's CPUs have it

STEPS = 16
# int8 activations (per block of 32, like MatMulNBits' accuracy level 4): logits within 5% of the step's largest
# magnitude (measured 1-3%), and at most 2 of the 17 greedy positions flipped (measured 0-1)
RELATIVE_TOLERANCE, MAX_FLIPS = 0.05, 2
CASES = [("llama-tied", "Q4K"), ("llama-untied", "Q8_0"), ("llama3-rope", "Q4_0"), ("qwen2", "Q4K"),
         ("qwen3", "Q4K"), ("mistral", "Q4_1")]


def teacher_forced(executor, prompt: list[int], tokens: list[int]) -> np.ndarray:
    rows = [executor.forward(0, np.array([prompt]), np.array([0]))[0]]
    for step, token in enumerate(tokens[:-1]):
        rows.append(executor.forward(0, np.array([[token]]), np.array([len(prompt) + step]))[0])
    return np.stack(rows)


@pytest.mark.parametrize("family,isq", CASES)
def test_native_decode_follows_the_exact_graph(tiny_artifact, prompt, family, isq):
    executor = executor_for(tiny_artifact(family, isq, decode="native"), max_slots=2)
    native, executor.native = executor.native, None
    tokens, exact = greedy_run(executor, prompt, STEPS)  # the ONNX graph throughout
    executor.native = native
    ours = teacher_forced(executor, prompt, tokens)
    relative = np.abs(ours - exact).max(-1) / np.abs(exact).max(-1)
    assert relative.max() < RELATIVE_TOLERANCE
    assert (ours.argmax(-1) != exact.argmax(-1)).sum() <= MAX_FLIPS


def test_batched_native_rows_equal_each_row_alone(tiny_artifact):
    executor = executor_for(tiny_artifact("qwen2", "Q4K", decode="native"), max_slots=4)
    short, long = [5, 17, 42, 7, 99], [3, 8, 120, 64, 11, 250, 9, 31, 77]
    _, short_alone = greedy_run(executor, short, 4, slot=2)
    _, long_alone = greedy_run(executor, long, 4, slot=3)
    for step, rows in enumerate(batched_decode(executor, [short, long], 4)):
        assert max_abs(rows[0], short_alone[step]) == 0 and max_abs(rows[1], long_alone[step]) == 0, step


def test_odd_block_counts_and_batches_past_a_tile(tiny_tokenizer, tmp_path):
    """down_proj over 3 blocks of 32 (the AMX path takes blocks in pairs) and 18 rows (more than a 16-row tile)."""
    from tiny_models import TinySpec, compile_tiny, random_model, save_checkpoint

    spec = TinySpec("LlamaConfig", "LlamaForCausalLM", {"intermediate_size": 96})
    checkpoint = save_checkpoint(tmp_path / "hf", random_model(spec, seed=7), tiny_tokenizer)
    compile_tiny(checkpoint, tmp_path / "out", "Q4K", decode="native")
    executor = executor_for(tmp_path / "out", max_slots=18)
    prompts = [[5 + row, 17, 42 + row] for row in range(18)]
    alone = [greedy_run(executor, prompt, 2, slot=17)[1] for prompt in prompts[:3]]
    for step, rows in enumerate(batched_decode(executor, prompts, 2)):
        for row in range(3):
            assert max_abs(rows[row], alone[row][step]) == 0, (step, row)


def test_manifest_records_the_native_files_and_required_isa(tiny_artifact):
    manifest = json.loads((tiny_artifact("llama-tied", "Q4K", decode="native") / "manifest.json").read_text())
    assert manifest["backend"]["options"]["decode"] == "native"
    files = manifest["backend"]["details"]["native_decode"]
    assert set(files.values()) <= set(manifest["files"])  # checksummed
    assert set(ISA_FLAGS) <= set(manifest["target"]["requires"])


def test_native_decode_refuses_a_target_without_vnni(tiny_checkpoint, tmp_path):
    from tiny_models import compile_tiny

    with pytest.raises(UnsupportedTarget, match="native decode needs .*avx512_vnni"):
        compile_tiny(tiny_checkpoint("llama-tied"), tmp_path / "out", "Q4K", target="cpu:x86_64+avx2",
                     decode="native")


def test_native_decode_needs_quantized_weights(tiny_checkpoint, tmp_path):
    from tiny_models import compile_tiny

    with pytest.raises(NativeDecodeUnsupported, match="needs quantized linear weights"):
        compile_tiny(tiny_checkpoint("llama-tied"), tmp_path / "out", None, decode="native")

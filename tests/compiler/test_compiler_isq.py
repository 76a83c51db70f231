"""ISQ: mistral.rs names, the numpy block-quantization kernels against ggml, and quantized artifacts against the
eager decoder on the dequantized weights (so the only error left is the kernels')."""
import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as QType
from tiny_models import eager_model, executor_for, greedy_run, teacher_forced

from mistralrs.compiler.isq import SCHEMES, UnknownIsqType, accepted_names, parse_isq
from mistralrs.compiler.targets.onnx_quantized import kernel_form
from mistralrs.ops.quantize import FP32_NOISE, dequantize, fp16_grid, pack_zero_points, quantize, unpack
from mistralrs.runtime.artifact import open_artifact

PROMPT = [5, 17, 42, 7, 99, 3, 8]


def scheme_quantize(weight: np.ndarray, name: str):
    s = SCHEMES[name]
    return quantize(weight, s.bits, s.block_size, s.symmetric, float_zero_point=s.float_zero_point, refine=s.refine)


def random_weight(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)


# --- names ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, scheme", [
    ("q4k", "Q4K"), ("Q4K", "Q4K"), ("Q4_0", "Q4_0"), ("q4_0", "Q4_0"), ("4", "Q4K"), ("8", "Q8_0"),
    ("q8_0", "Q8_0"), ("Q4_1", "Q4_1"), ("Q8_1", "Q8_1"), (" q8_1 ", "Q8_1"),
])
def test_parse_isq_accepts_mistralrs_names(value, scheme):
    assert parse_isq(value) is SCHEMES[scheme]


@pytest.mark.parametrize("value", [None, "F32", "f32", "none"])
def test_parse_isq_unquantized(value):
    assert parse_isq(value) is None


def test_unknown_isq_lists_accepted_names():
    with pytest.raises(UnknownIsqType, match="Q7_3 unknown") as error:
        parse_isq("Q7_3")
    assert all(name in str(error.value) for name in accepted_names())
    assert set(accepted_names()) >= {"4", "8", "Q4_0", "Q4_1", "Q4K", "Q8_0", "Q8_1", "F32"}


@pytest.mark.parametrize("value", ["Q5K", "hqq4", "FP8", "q6k", "AFQ4"])
def test_known_but_unsupported_isq(value):
    with pytest.raises(UnknownIsqType, match=rf"ISQ type {value} is a mistral\.rs type this compiler does not support"):
        parse_isq(value)


# --- kernels --------------------------------------------------------------------------------------------------

def step_bound(name: str) -> float:
    """Largest round-trip error in quantization steps: half a step, except ggml Q4_0, whose scale maps the
    block's signed extreme to -8, so the opposite extreme may clip at +7 (a whole step)."""
    return 1.0 if name == "Q4_0" else 0.5


@pytest.mark.parametrize("name", [n for n in SCHEMES if not SCHEMES[n].refine])
def test_round_trip_error_within_a_step(name):
    weight = random_weight((8, 72))  # K = 72: the last block is padded
    qt = scheme_quantize(weight, name)
    assert (qt.num_blocks, qt.packed.shape) == (3, (8, 3, 32 * qt.bits // 8))
    restored = dequantize(qt)
    assert restored.shape == weight.shape
    steps = np.abs(restored - weight) / np.repeat(qt.scales, 32, axis=1)[:, :72]
    assert steps.max() <= step_bound(name) + 1e-4


def test_refine_never_increases_a_block_error():
    weight = random_weight((16, 256), seed=1)
    refined = dequantize(scheme_quantize(weight, "Q4K"))
    plain = dequantize(quantize(weight, 4, 32, symmetric=False, float_zero_point=True))
    block_error = lambda w: np.square(w - weight).reshape(16, -1, 32).sum(-1)
    assert (block_error(refined) <= block_error(plain) + 1e-6).all()
    assert block_error(refined).sum() < block_error(plain).sum()


@pytest.mark.parametrize("name", list(SCHEMES))
def test_zero_block_round_trips_to_zero(name):
    weight = random_weight((2, 64))
    weight[:, :32] = 0
    restored = dequantize(scheme_quantize(weight, name))
    assert np.isfinite(restored).all() and (restored[:, :32] == 0).all()


def test_4bit_packing_is_low_nibble_first():
    assert unpack(np.array([[0x21, 0xF0]], np.uint8), 4).tolist() == [[1, 2, 0, 15]]
    assert pack_zero_points(np.array([[1, 2, 3]], np.uint8), 4).tolist() == [[0x21, 0x03]]
    assert pack_zero_points(np.array([[1, 2, 3]], np.uint8), 8).tolist() == [[1, 2, 3]]


def test_q4_0_rounds_like_ggml():
    """ggml's fp16 block scales; ggml picks the codes with the unrounded scale, we with the stored fp16 one, so the few
    codes that differ are the nearer ones."""
    weight = random_weight((16, 256))
    ggml = gguf.quants.dequantize(gguf.quants.quantize(weight, QType.Q4_0), QType.Q4_0)
    ours = dequantize(scheme_quantize(weight, "Q4_0"))
    differ = ~np.isclose(ours, ggml, rtol=1e-6, atol=0)
    assert differ.mean() < 0.01
    assert (np.abs(ours - weight)[differ] < np.abs(ggml - weight)[differ]).all()


def test_q8_0_scale_search_never_loses_to_ggml_and_keeps_a_q8_0_grid():
    """Q8_0 searches each block's scale for the least squared error: no block is worse than ggml's |max| / 127,
    weights already on a Q8_0 grid stay exact, and a Q4_1 grid (SmolLM2's layers) comes out far closer."""
    weight = random_weight((16, 256))
    ggml = gguf.quants.dequantize(gguf.quants.quantize(weight, QType.Q8_0), QType.Q8_0)
    ours = dequantize(scheme_quantize(weight, "Q8_0"))
    block_error = lambda w: np.square(w - weight).reshape(16, -1, 32).sum(-1)  # noqa: E731
    assert (block_error(ours) <= block_error(ggml) * (1 + 1e-3)).all()
    np.testing.assert_allclose(dequantize(scheme_quantize(ggml, "Q8_0")), ggml, rtol=0, atol=1e-6)
    grid = gguf.quants.dequantize(gguf.quants.quantize(weight, QType.Q4_1), QType.Q4_1)
    plain = dequantize(quantize(grid, 8, 32, symmetric=True))
    searched = dequantize(scheme_quantize(grid, "Q8_0"))
    assert np.square(searched - grid).sum() < 0.5 * np.square(plain - grid).sum()


def is_fp16(values: np.ndarray) -> bool:
    return np.array_equal(values.astype(np.float16).astype(np.float32), values)


@pytest.mark.parametrize("name", list(SCHEMES))
def test_block_parameters_are_fp16_values(name):
    """Scales and float-zero-point block centres (8 - z) * s are fp16 values (ggml stores fp16 parameters too), so
    the kernel tables the ONNX target builds from them are too, except the block constant of asymmetric 8-bit codes."""
    qt = scheme_quantize(random_weight((16, 256)) * 0.02, name)
    assert is_fp16(qt.scales)
    form = kernel_form(qt, int8_activations=False)
    assert all(is_fp16(term.scales) for term in form.terms)
    if SCHEMES[name].float_zero_point:
        centres = (8 - qt.zero_points) * qt.scales  # fp16 values up to the float32 rounding of this product
        assert (np.abs(fp16_grid(centres) - centres) <= FP32_NOISE * (8 + np.abs(qt.zero_points)) * qt.scales).all()
        assert is_fp16(form.block_constant)


@pytest.mark.parametrize("name", ["Q4_1", "Q4K"])
def test_float_zero_points_reproduce_a_q4_1_grid(name):
    """Float zero points are exact on weights already on a Q4_1 grid, with ggml's own fp16 block scales; the kernel
    form's block constant is the centre m + 8 d (an fp16 value here, as on all but 2 of SmolLM2's 3.3M blocks)."""
    weight = random_weight((16, 256))
    blocks = gguf.quants.quantize(weight, QType.Q4_1).reshape(16, 8, 20)  # per block: fp16 d, fp16 m, 16 code bytes
    d, m = (blocks[..., i:i + 2].copy().view(np.float16)[..., 0].astype(np.float32) for i in (0, 2))
    grid = gguf.quants.dequantize(blocks.reshape(16, -1), QType.Q4_1)
    qt = scheme_quantize(grid, name)
    np.testing.assert_allclose(dequantize(qt), grid, rtol=0, atol=1e-6)
    assert np.array_equal(qt.scales, d)
    assert is_fp16(m + 8 * d)
    assert np.array_equal(kernel_form(qt, int8_activations=False).block_constant, m + 8 * d)


@pytest.mark.parametrize("name", ["Q4_1", "Q4K"])
def test_a_q4_1_block_whose_centre_is_no_fp16_value_stays_exact(name):
    """Where a Q4_1 block's m + 8 d is no fp16 value, the block keeps that exact centre rather than move onto another
    grid (its tensor then stays fp32 in an ONNX artifact)."""
    d, m = np.float32(np.float16(1.5 * 2**-14)), np.float32(1.0)
    grid = (np.arange(64) % 16 * d + m).astype(np.float32).reshape(2, 32)
    qt = scheme_quantize(grid, name)
    assert np.array_equal(dequantize(qt), grid)
    assert np.array_equal(qt.scales, np.full((2, 1), d))
    centres = kernel_form(qt, int8_activations=False).block_constant
    assert np.array_equal(centres, np.full((2, 1), m + 8 * d)) and not is_fp16(centres)


# --- quantized artifacts are exact on their dequantized weights ------------------------------------------------

@pytest.mark.parametrize("family", ["llama-untied", "qwen2"])  # untied: 4-bit LM head; qwen2: tied + qkv bias
@pytest.mark.parametrize("name", list(SCHEMES))
def test_quantized_artifact_matches_eager_on_dequantized_weights(tiny_artifact, tiny_checkpoint, family, name):
    """Kernel exactness: with fp32 matmul compute the quantized graph is the eager model on dequantized weights."""
    artifact = tiny_artifact(family, isq=name, matmul_accuracy="fp32")
    assert open_artifact(artifact).isq == name
    tokens, logits = greedy_run(executor_for(artifact), PROMPT)
    reference = teacher_forced(eager_model(tiny_checkpoint(family), SCHEMES[name]), PROMPT, tokens)
    per_step = np.abs(logits - reference).max(axis=-1)
    assert per_step.max() < 1e-3, per_step
    assert reference.argmax(-1).tolist() == tokens
    unquantized = teacher_forced(eager_model(tiny_checkpoint(family)), PROMPT, tokens)
    assert np.abs(logits - unquantized).max() > 1e-2  # the weights really were quantized


@pytest.mark.parametrize("accuracy", ["mixed", "int8"])
@pytest.mark.parametrize("name", ["Q8_0", "Q4K"])
def test_int8_activations_stay_close_to_the_dequantized_model(tiny_artifact, tiny_checkpoint, name, accuracy):
    """int8-activation matmuls trade a little accuracy for speed: within 0.1 of exact logits (|logits| ~ 3)."""
    artifact = tiny_artifact("qwen2", isq=name, matmul_accuracy=accuracy)
    options = open_artifact(artifact).manifest["backend"]["options"]
    assert options == {"matmul_accuracy": accuracy, "decode": "onnxruntime"}
    tokens, logits = greedy_run(executor_for(artifact), PROMPT)
    reference = teacher_forced(eager_model(tiny_checkpoint("qwen2"), SCHEMES[name]), PROMPT, tokens)
    assert np.abs(logits - reference).max() < 0.1

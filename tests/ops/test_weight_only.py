"""Weight-only layers against their reference implementations (the same codes, scales and zeros in plain torch
arithmetic), on CPU here and on CUDA with `-m gpu`."""
import numpy as np
import pytest
import torch

from mistralrs.compiler.isq import SCHEMES
from mistralrs.ops.quantize import quantize, unpack
from mistralrs.ops.weight_only import Int4Linear, Int8Linear, quantize_linears

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                                   reason="needs a CUDA GPU")])]


def _weight(out_features=96, in_features=256, seed=0) -> torch.Tensor:
    return torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed)) * 0.05


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scheme", ["Q4_0", "Q4_1", "Q4K"])
def test_int4_matches_its_reference(scheme, device):
    """The kernel against x @ w.T with w rebuilt from ops.quantize's codes and the layer's stored scales and zeros
    (bf16 on CUDA), so only the kernel's arithmetic differs."""
    s, dtype = SCHEMES[scheme], torch.bfloat16 if device == "cuda" else torch.float32
    weight, x = _weight(), (torch.randn(5, 256) * 0.5).to(dtype)
    layer = Int4Linear(weight.to(device, dtype), None, s.block_size, s.symmetric, s.float_zero_point, s.refine)
    codes = unpack(quantize(weight.to(dtype).float().numpy(), 4, s.block_size, s.symmetric, s.float_zero_point,
                            s.refine).packed, 4).reshape(weight.shape)
    scales, zeros = layer.scales.float().cpu(), layer.zeros.float().cpu()  # [N, K / g]
    groups = (torch.from_numpy(codes.astype(np.float32)) - 8).unflatten(1, (-1, s.block_size))
    reference = x.float() @ (groups * scales[..., None] + zeros[..., None]).flatten(1).T
    out = layer(x.to(device)).float().cpu()
    assert (out - reference).abs().max() < (1e-2 if device == "cuda" else 1e-5) * reference.abs().max()


def test_int4_stays_close_to_the_float_weight():
    weight, x = _weight(), torch.randn(5, 256) * 0.5
    layer = Int4Linear(weight, None, 32, symmetric=False, float_zero_point=True, refine=True)
    reference = x @ weight.T
    assert (layer(x) - reference).abs().max() < 0.1 * reference.abs().max()  # 16 levels on Gaussian weights


@pytest.mark.parametrize("device", DEVICES)
def test_int8_matches_its_dequantized_weight_and_is_close_to_float(device):
    """On CUDA the Triton kernel runs in bf16 (as served): the reference uses the same bf16 inputs and scales."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    weight, bias, x = _weight(), torch.randn(96) * 0.1, (torch.randn(3, 7, 256)).to(dtype)
    layer = Int8Linear(weight.to(device, dtype), bias.to(device, dtype))
    dequantized = layer.qweight.float().cpu() * layer.scale.float().cpu()[:, None]
    out = layer(x.to(device)).float().cpu()
    reference = x.float() @ dequantized.T + bias.to(dtype).float()
    tolerance = 1e-2 if device == "cuda" else 1e-5
    assert (out - reference).abs().max() < tolerance * reference.abs().max()
    half_step = weight.abs().amax(1).max() / 254
    scale_rounding = 0 if dtype == torch.float32 else 127 * half_step * 2 ** -7  # bf16 scales: 8 significant bits
    assert (dequantized - weight.to(dtype).float()).abs().max() <= half_step + scale_rounding + 1e-6
    assert out.shape == (3, 7, 96)


def test_quantize_linears_replaces_every_linear_and_keeps_bias():
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(32, 64)))
    x = torch.randn(2, 64)
    expected = model(x)
    assert quantize_linears(model, SCHEMES["Q8_0"]) == 2
    assert [type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__] == ["Int8Linear"] * 2
    assert np.abs((model(x) - expected).detach().numpy()).max() < 0.02

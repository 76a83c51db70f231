"""ops/gemv.py: the reference (CPU) against the unfused layers it replaces, and on CUDA (`-m gpu`) the Triton kernel
against the reference for every weight format and fusion, with row counts that leave partial tiles."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mistralrs.model_zoo.cached_decoder import interleave_linears
from mistralrs.model_zoo.decoder import RMSNorm
from mistralrs.ops.gemv import gemv, gemv_reference, linear_operands
from mistralrs.ops.weight_only import Int4Linear, Int8Linear


def _linear(n, k, bias=False, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(k, n, bias=bias)
    layer.weight.data.mul_(3)
    return layer


def _layers(fmt: str, n: int, k: int, bias=False):
    dense = _linear(n, k, bias)
    if fmt == "int8":
        return Int8Linear(dense.weight.data, dense.bias.data if bias else None)
    if fmt == "int4":
        return Int4Linear(dense.weight.data, dense.bias.data if bias else None, 32, False, True, True)
    return dense


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    return type(value)(_to_cpu(item) for item in value) if isinstance(value, (tuple, list)) else value


def _close(out, reference, tolerance):
    return (out.float() - reference.float()).abs().max() <= tolerance * reference.float().abs().max()


@pytest.mark.parametrize("fmt", ["dense", "int8", "int4"])
def test_reference_is_norm_then_linear(fmt):
    layer, norm = _layers(fmt, 48, 256, bias=True), RMSNorm(256, 1e-5)
    norm.weight.data = torch.rand(256) + 0.5
    x = torch.randn(256)
    out = gemv_reference(x, **linear_operands(layer), rms_eps=norm.eps, norm_weight=norm.weight)
    assert _close(out, layer(norm(x)), 1e-5)


def test_reference_residual_and_interleaved_swiglu():
    gate, up, x, residual = _linear(40, 128, seed=1), _linear(40, 128, seed=2), torch.randn(128), torch.randn(40)
    packed = interleave_linears(gate, up)
    assert _close(gemv_reference(x, **linear_operands(packed), swiglu=True), F.silu(gate(x)) * up(x), 1e-5)
    assert _close(gemv_reference(x, **linear_operands(gate), residual=residual), gate(x) + residual, 1e-5)


def test_tied_head_is_a_bare_weight():
    weight, x = torch.randn(100, 64), torch.randn(64)
    assert _close(gemv(x, **linear_operands(weight)), weight @ x, 1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("fmt", ["dense", "int8", "int4"])
@pytest.mark.parametrize("fusion", ["plain", "rms", "rms+weight", "rms+bias+swiglu", "rms+rope", "residual"])
@pytest.mark.parametrize("shape", [(3078, 2048), (2050, 8192), (30, 96)])
def test_kernel_matches_reference(fmt, fusion, shape):
    n, k = shape
    layer = _layers(fmt, n, k, bias="bias" in fusion).to("cuda", torch.bfloat16)
    x = torch.randn(k, device="cuda", dtype=torch.bfloat16)
    options = {}
    if "rms" in fusion:
        options["rms_eps"] = 1e-5
    if "weight" in fusion:
        options["norm_weight"] = torch.rand(k, device="cuda", dtype=torch.bfloat16) + 0.5
    if "swiglu" in fusion:
        options["swiglu"] = True
    if "rope" in fusion:
        head_dim = 64 if n >= 128 else 8
        angles = torch.rand(5, head_dim // 2, device="cuda") * 6  # a table of 5 positions, rotated by row 3
        position = torch.tensor([3], device="cuda")
        options["rope"] = (angles.cos(), angles.sin(), position, (n // (2 * head_dim)) * head_dim, head_dim)
    if fusion == "residual":
        options["residual"] = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    out = gemv(x, **linear_operands(layer), **options)
    x_cpu, operands, options_cpu = _to_cpu((x, linear_operands(layer), options))
    reference = gemv(x_cpu, **operands, **options_cpu).to(out.device)  # on CPU, gemv is gemv_reference
    assert out.shape == reference.shape
    assert _close(out, reference, 2e-2)  # a bf16 rounding or two of the fp32 sums, which add in another order

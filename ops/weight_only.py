"""Weight-only quantized linear layers for the torch backends (inductor): int8 per output channel, int4 group-wise.

Both layers keep their tensors as buffers (torch.export lifts them into constants that the inductor artifact stores
beside its packages) in one device-independent layout, which ops/gemv.py's batch-1 kernel reads too. On CUDA the
matmul is a Triton kernel (ops/triton_matmul.py) that reads the codes as they are; on CPU the graph dequantizes
them before the matmul.
"""
import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .quantize import quantize, unpack

BLOCK_M, BLOCK_N, BLOCK_K = 16, 16, 256


class Int8Linear(nn.Module):
    """y = (x @ q.T) * scale (+ bias): int8 codes [N, K], one symmetric scale per output row."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        scale = weight.float().abs().amax(dim=1).clamp(min=1e-12) / 127
        codes = (weight.float() / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
        self.register_buffer("qweight", codes)
        self.register_buffer("scale", scale.to(weight.dtype))
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = weight_only_matmul(x, self.qweight, self.scale)
        return y if self.bias is None else y + self.bias


class Int4Linear(nn.Module):
    """int4: w = (q - 8) * scale + zero on groups of `group_size` along K, codes from ops.quantize, two a byte
    ([N, K/2], even k in the high nibble); scales and zeros [N, K / group_size]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, group_size: int, symmetric: bool,
                 float_zero_point: bool, refine: bool):
        super().__init__()
        out_features, in_features = weight.shape
        if in_features % group_size or group_size % 2:
            raise ValueError(f"int4 needs in_features divisible by the (even) group size, got {in_features}")
        qt = quantize(weight.float().cpu().numpy(), 4, group_size, symmetric, float_zero_point, refine)
        codes = torch.from_numpy(unpack(qt.packed, 4).reshape(out_features, in_features).astype(np.int32))
        scales = torch.from_numpy(qt.scales)
        zero_points = 8.0 if qt.zero_points is None else torch.from_numpy(qt.zero_points.astype(np.float32))
        zeros = scales * (8 - zero_points)  # (q - zp) * s = (q - 8) * s + s * (8 - zp)
        self.register_buffer("qweight", (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8).to(weight.device))
        self.register_buffer("scales", scales.to(weight.device, weight.dtype))
        self.register_buffer("zeros", zeros.to(weight.device, weight.dtype))
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = weight_only_matmul(x, self.qweight, self.scales, self.zeros)
        return y if self.bias is None else y + self.bias


def dequantize(weight: torch.Tensor, scales: torch.Tensor | None = None,
               zeros: torch.Tensor | None = None) -> torch.Tensor:
    """The fp32 [N, K] matrix that a weight stands for: a float matrix as it is, int8 codes [N, K] times `scales`
    [N], or int4 codes two a byte [N, K/2] as (q - 8) * scales + zeros on groups ([N, K/G] each)."""
    if weight.dtype == torch.int8:
        return weight.float() * scales.float()[:, None]
    if weight.dtype != torch.uint8:
        return weight.float()
    codes = torch.stack([weight >> 4, weight & 15], dim=-1).reshape(weight.shape[0], -1).float()  # [N, K]
    groups = (codes - 8).unflatten(1, (scales.shape[1], -1))  # [N, K / G, G]
    return (groups * scales.float()[..., None] + zeros.float()[..., None]).flatten(1)


def weight_only_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                       zeros: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., K] @ dequantize(qweight, scales, zeros).T in x's dtype."""
    if not x.is_cuda:
        return F.linear(x, dequantize(qweight, scales, zeros).to(x.dtype))
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    return weight_only_matmul_op()(rows, qweight, scales, zeros).reshape(*x.shape[:-1], -1)


@functools.cache
def weight_only_matmul_op():
    """The registered op (Triton is imported on first use: CPU-only installs do not have it)."""
    from . import triton_matmul

    @torch.library.triton_op("mistralrs::weight_only_matmul", mutates_args=())
    def op(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None) -> torch.Tensor:
        rows, k = x.shape
        n = qweight.shape[0]
        int4 = qweight.dtype == torch.uint8
        y = torch.empty((rows, n), dtype=x.dtype, device=x.device)
        grid = ((rows + BLOCK_M - 1) // BLOCK_M, (n + BLOCK_N - 1) // BLOCK_N)
        torch.library.wrap_triton(triton_matmul.matmul_kernel)[grid](
            x, qweight, scales, scales if zeros is None else zeros, y, rows, n, k, x.stride(0), y.stride(0),
            FORMAT=2 if int4 else 1, G=k // scales.shape[1] if int4 else 1, BM=BLOCK_M, BN=BLOCK_N, BK=BLOCK_K)
        return y

    return op


def quantize_linears(module: nn.Module, scheme) -> int:
    """Replace every nn.Linear under `module` by its weight-only quantized form (8-bit schemes -> Int8Linear,
    4-bit -> Int4Linear); returns how many were replaced."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, quantized_linear(child.weight.data, child.bias, scheme))
            count += 1
        else:
            count += quantize_linears(child, scheme)
    return count


def quantized_linear(weight: torch.Tensor, bias, scheme) -> nn.Module:
    bias = None if bias is None else bias.data
    if scheme.bits == 8:
        return Int8Linear(weight, bias)
    if scheme.bits == 4:
        return Int4Linear(weight, bias, scheme.block_size, scheme.symmetric, scheme.float_zero_point, scheme.refine)
    raise ValueError(f"no weight-only layer for {scheme.bits}-bit weights")

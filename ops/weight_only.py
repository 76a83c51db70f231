"""Weight-only quantized linear layers for the torch backends (inductor): int8 per output channel, int4 group-wise.

On CUDA, int8 runs our Triton kernel (ops/triton_int8.py) and int4 torch's tinygemm kernel, whose packed layout is
device-specific, so weights are packed on the device the artifact targets; on CPU both dequantize in the graph. Both
layers keep their tensors as buffers: torch.export lifts them into constants that the inductor artifact stores
beside its packages.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .quantize import quantize, unpack
from .triton_int8 import int8_linear

INT4_INNER_K_TILES = (8, 4, 2)


class Int8Linear(nn.Module):
    """y = (x @ q.T) * scale (+ bias): int8 codes, one symmetric scale per output row (on CUDA a Triton kernel,
    ops/triton_int8.py, that reads the codes as they are)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        scale = weight.float().abs().amax(dim=1).clamp(min=1e-12) / 127
        codes = (weight.float() / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
        self.register_buffer("qweight", codes)
        self.register_buffer("scale", scale.to(weight.dtype))
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            rows = x.reshape(-1, x.shape[-1]).contiguous()
            y = int8_linear()(rows, self.qweight, self.scale).reshape(*x.shape[:-1], -1)
        else:
            y = F.linear(x, self.qweight.to(x.dtype)) * self.scale
        return y if self.bias is None else y + self.bias


class Int4Linear(nn.Module):
    """int4: w = (q - 8) * scale + zero on groups of `group_size` along K, codes from ops.quantize.

    CUDA runs tinygemm (`_weight_int4pack_mm`) on its packed layout. On CPU the codes stay two per byte and the
    graph unpacks and dequantizes them before the matmul: AOTInductor's CPU lowering of
    `_weight_int4pack_mm_for_cpu` derives a repacked weight constant at compile time that a package stored without
    its constants cannot rebuild.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, group_size: int, symmetric: bool,
                 float_zero_point: bool, refine: bool):
        super().__init__()
        out_features, in_features = weight.shape
        inner_k_tiles = next((t for t in INT4_INNER_K_TILES if in_features % (t * 16) == 0), None)
        if inner_k_tiles is None or in_features % group_size:
            raise ValueError(f"int4 needs in_features divisible by 32 and by the group size, got {in_features}")
        qt = quantize(weight.float().cpu().numpy(), 4, group_size, symmetric, float_zero_point, refine)
        codes = torch.from_numpy(unpack(qt.packed, 4).reshape(out_features, in_features).astype(np.int32))
        scales = torch.from_numpy(qt.scales)
        zero_points = 8.0 if qt.zero_points is None else torch.from_numpy(qt.zero_points.astype(np.float32))
        zeros = scales * (8 - zero_points)  # (q - zp) * s = (q - 8) * s + s * (8 - zp)
        self.group_size, self.in_features = group_size, in_features
        nibbles = (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8).to(weight.device)
        if weight.is_cuda:
            nibbles = torch.ops.aten._convert_weight_to_int4pack(nibbles, inner_k_tiles)
        self.register_buffer("qweight", nibbles)
        self.register_buffer("scales_and_zeros", torch.stack([scales.T, zeros.T], dim=-1).to(weight.device,
                                                                                               weight.dtype))
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            rows = x.reshape(-1, self.in_features)
            y = torch.ops.aten._weight_int4pack_mm(rows, self.qweight, self.group_size, self.scales_and_zeros)
            y = y.reshape(*x.shape[:-1], -1)
        else:
            y = F.linear(x, self._dequantized(x.dtype))
        return y if self.bias is None else y + self.bias

    def _dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        codes = torch.stack([self.qweight >> 4, self.qweight & 15], dim=-1).reshape(self.qweight.shape[0], -1)
        groups = (codes.to(dtype) - 8).unflatten(1, (-1, self.group_size))  # [N, K / g, g]
        scales, zeros = self.scales_and_zeros.transpose(0, 1).unbind(-1)  # [N, K / g] each
        return (groups * scales[..., None] + zeros[..., None]).flatten(1)


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

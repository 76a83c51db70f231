"""How a quantized weight maps onto ORT's fast MatMulNBits kernels: a sum of kernel terms plus a block constant.

ORT's MatMulNBits is fast for 4-bit weights with integer (or no) zero points, and for 8-bit weights only with
int8 activations. Two exact rewrites keep other weights on fast paths:
- float zero points: w = (q - z) s = (q - 8) s + (8 - z) s, a zero-point-free term plus a per-block constant, the
  block's centre, which the quantizer makes an fp16 value (so the artifact stores it in fp16). The uncentred form
  q s + (-z s) with integer zero points 0 measured slower (MatMulNBits with zero points: ~9% per matmul, 3-4% per
  decode step) and, with int8 activations, less accurate (the activation rounding error is multiplied by the codes);
- 8-bit codes with fp32 activations: q = 16 hi + lo, so w = s (16 (hi - 8) + (lo - 0)) + (128 - z) s: two 4-bit
  terms on one scale table (the high one reads 16 x), the low one with zero points 0, and a per-block constant only
  for asymmetric codes (z != 128).
A per-block constant C[n, b] contributes blocksum(x)[b] @ C[n, b] to the output.
"""
from dataclasses import dataclass, field

import numpy as np

from ...ops.quantize import FP32_NOISE, QuantizedTensor, fp16_grid, pack, pack_zero_points, unpack


@dataclass(slots=True)
class KernelTerm:
    """One MatMulNBits operand: w = (codes - zero) * scales, zero = 2^(bits-1) when zero_points is None."""

    packed: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray | None  # uint8 codes [N, num_blocks]
    bits: int
    input_scale: float = 1.0  # the term multiplies input_scale * x
    names: dict[str, str] = field(default_factory=dict)  # the initializers a lowering made for it

    def packed_zero_points(self) -> np.ndarray | None:
        return None if self.zero_points is None else pack_zero_points(self.zero_points, self.bits)


@dataclass(slots=True)
class KernelForm:
    terms: list[KernelTerm]
    block_constant: np.ndarray | None  # [N, num_blocks]
    names: dict[str, str] = field(default_factory=dict)


def kernel_form(qt: QuantizedTensor, int8_activations: bool) -> KernelForm:
    has_float_zero = qt.zero_points is not None and qt.zero_points.dtype == np.float32
    if qt.bits == 8 and not int8_activations:
        return _nibble_split(qt)
    if has_float_zero:
        half = np.float32(2 ** (qt.bits - 1))
        centres = (half - qt.zero_points) * qt.scales
        rounding = FP32_NOISE * (half + np.abs(qt.zero_points)) * qt.scales
        return KernelForm([KernelTerm(qt.packed, qt.scales, None, qt.bits)], _snap_to_fp16(centres, rounding))
    return KernelForm([KernelTerm(qt.packed, qt.scales, qt.zero_points, qt.bits)], None)


def _snap_to_fp16(values: np.ndarray, rounding: np.ndarray) -> np.ndarray:
    """Each entry's nearest fp16 value where that is within `rounding` (a bound on the float32 error of computing it:
    the quantizer's fp16 centres come back from (8 - z) * s), else the entry as it is."""
    nearest = fp16_grid(values)
    return np.where(np.abs(nearest - values) <= rounding, nearest, values).astype(np.float32)


def _nibble_split(qt: QuantizedTensor) -> KernelForm:
    codes = unpack(qt.packed, 8)
    high, low = codes >> 4, codes & 0x0F
    terms = [KernelTerm(pack(high, 4), qt.scales, None, 4, input_scale=16.0),
             KernelTerm(pack(low, 4), qt.scales, np.zeros(qt.scales.shape, np.uint8), 4)]
    if qt.zero_points is None:
        return KernelForm(terms, None)
    return KernelForm(terms, ((128 - qt.zero_points.astype(np.float32)) * qt.scales).astype(np.float32))

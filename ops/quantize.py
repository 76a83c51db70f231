"""Block-wise weight quantization kernels (numpy), in the layout ONNX Runtime's MatMulNBits reads."""
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class QuantizedTensor:
    """A [N, K] weight as `bits`-bit codes on blocks of `block_size` along K.

    packed: uint8 [N, num_blocks, block_size * bits / 8], low nibble first for 4 bits.
    scales: float32 [N, num_blocks]. zero_points: None (symmetric: 2^(bits-1)), uint8 or float32 [N, num_blocks].
    """

    packed: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray | None
    bits: int
    block_size: int
    shape: tuple[int, int]

    @property
    def num_blocks(self) -> int:
        return self.scales.shape[1]

    @property
    def nbytes(self) -> int:
        zp = 0 if self.zero_points is None else self.zero_points.nbytes
        return self.packed.nbytes + self.scales.nbytes + zp


def quantize(weight: np.ndarray, bits: int, block_size: int, symmetric: bool,
             float_zero_point: bool = False, refine: bool = False) -> QuantizedTensor:
    blocks = _to_blocks(weight.astype(np.float32, copy=False), block_size)
    if symmetric:
        codes, scales, zero_points = _symmetric(blocks, bits)
        if refine:
            codes, scales = _search_symmetric(blocks, codes, scales, bits)
    else:
        codes, scales, zero_points = _asymmetric(blocks, bits, float_zero_point)
        if refine:
            codes, scales, zero_points = _refine(blocks, codes, scales, zero_points, bits)
    return QuantizedTensor(pack(codes, bits), scales, zero_points, bits, block_size, weight.shape)


def dequantize(qt: QuantizedTensor) -> np.ndarray:
    codes = unpack(qt.packed, qt.bits).astype(np.float32)
    zero = qt.zero_points if qt.zero_points is not None else np.float32(2 ** (qt.bits - 1))
    zero = np.asarray(zero, np.float32)
    if zero.ndim:
        zero = zero[..., None]
    w = (codes - zero) * qt.scales[..., None]
    return w.reshape(qt.shape[0], -1)[:, : qt.shape[1]]


def _to_blocks(weight: np.ndarray, block_size: int) -> np.ndarray:
    rows, cols = weight.shape
    padded = -cols % block_size
    if padded:
        weight = np.pad(weight, ((0, 0), (0, padded)))
    return weight.reshape(rows, -1, block_size)


def _symmetric(blocks: np.ndarray, bits: int):
    """ggml Q4_0 / Q8_0 rounding: 4 bits scale by the signed extreme / -8, 8 bits by |max| / 127."""
    half = 2 ** (bits - 1)
    if bits == 4:
        index = np.abs(blocks).argmax(axis=-1)[..., None]
        scales = np.take_along_axis(blocks, index, axis=-1)[..., 0] / -half
    else:
        scales = np.abs(blocks).max(axis=-1) / (half - 1)
    return _symmetric_codes(blocks, scales, half), scales.astype(np.float32), None


def _search_symmetric(blocks, codes, scales, bits: int, refits: int = 2):
    """Per block, the scale with the least squared error among the default one, |max| / L for L a little below
    the top code, and least-squares refits; helps most on weights that already sit on a coarser grid."""
    half = 2 ** (bits - 1)
    error = _block_error(blocks, codes, scales, np.float32(half))
    inexact = error > 0  # blocks the default scale already reproduces (a Q8_0 source) are left alone
    sub = blocks[inexact]
    amax = np.abs(sub).max(axis=-1)
    best = (codes[inexact], scales[inexact], error[inexact])
    for levels in range(half - 2, (11 * half) // 16, -1):  # 8 bits: 126 .. 89; 4 bits: 6
        best = _keep_better(sub, best, amax / levels, half)
    for _ in range(refits):
        best = _keep_better(sub, best, _symmetric_refit(sub, best[0], best[1], half), half)
    codes, scales = codes.copy(), scales.copy()
    codes[inexact], scales[inexact] = best[0], best[1]
    return codes, scales


def _keep_better(blocks, best, scales, half: int):
    codes, scales = _symmetric_codes(blocks, scales, half), scales.astype(np.float32)
    err = _block_error(blocks, codes, scales, np.float32(half))
    better = err < best[2]
    return (np.where(better[..., None], codes, best[0]), np.where(better, scales, best[1]), np.minimum(err, best[2]))


def _symmetric_codes(blocks, scales, half: int) -> np.ndarray:
    inverse = np.divide(1.0, scales, out=np.zeros_like(scales), where=scales != 0)
    return np.clip(np.rint(blocks * inverse[..., None]) + half, 0, 2 * half - 1).astype(np.uint8)


def _symmetric_refit(blocks, codes, scales, half: int) -> np.ndarray:
    q = codes.astype(np.float32) - half
    denominator = np.square(q).sum(-1)
    return np.where(denominator > 0, (q * blocks).sum(-1) / np.where(denominator > 0, denominator, 1), scales)


def _asymmetric(blocks: np.ndarray, bits: int, float_zero_point: bool):
    top = 2**bits - 1
    low, high = blocks.min(axis=-1), blocks.max(axis=-1)
    if not float_zero_point:  # an integer zero point must be a code, so the range must include 0
        low, high = np.minimum(low, 0.0), np.maximum(high, 0.0)
    scales = (high - low) / top
    inverse = np.divide(1.0, scales, out=np.zeros_like(scales), where=scales != 0)
    zero = -low * inverse
    if not float_zero_point:
        zero = np.clip(np.rint(zero), 0, top)
    codes = np.clip(np.rint(blocks * inverse[..., None] + zero[..., None]), 0, top)
    zero_dtype = np.float32 if float_zero_point else np.uint8
    return codes.astype(np.uint8), scales.astype(np.float32), zero.astype(zero_dtype)


def _refine(blocks, codes, scales, zero_points, bits, iterations: int = 2):
    """Alternate a per-block least-squares fit of (scale, zero) with re-rounding; keep what lowers the error."""
    top = 2**bits - 1
    best = (codes, scales, zero_points)
    best_err = _block_error(blocks, *best)
    for _ in range(iterations):
        q = best[0].astype(np.float32)
        scale, offset = _least_squares(q, blocks)
        inverse = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale != 0)
        zero = -offset * inverse
        if zero_points.dtype == np.uint8:
            zero = np.clip(np.rint(zero), 0, top)
        new_codes = np.clip(np.rint(blocks * inverse[..., None] + zero[..., None]), 0, top).astype(np.uint8)
        candidate = (new_codes, scale.astype(np.float32), zero.astype(zero_points.dtype))
        err = _block_error(blocks, *candidate)
        better = err < best_err
        best = tuple(np.where(better[..., None], c, b) if c.ndim == 3 else np.where(better, c, b)
                     for c, b in zip(candidate, best))
        best_err = np.minimum(err, best_err)
    return best


def _least_squares(q: np.ndarray, w: np.ndarray):
    """Fit w ≈ scale * q + offset per block."""
    n = q.shape[-1]
    sq, sw = q.sum(-1), w.sum(-1)
    sqq, sqw = (q * q).sum(-1), (q * w).sum(-1)
    det = n * sqq - sq * sq
    safe = np.where(det == 0, 1.0, det)
    scale = np.where(det == 0, 0.0, (n * sqw - sq * sw) / safe)
    offset = (sw - scale * sq) / n
    return scale, offset


def _block_error(blocks, codes, scales, zero_points):
    w = (codes.astype(np.float32) - zero_points[..., None].astype(np.float32)) * scales[..., None]
    return np.square(w - blocks).sum(-1)


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return codes
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return packed
    out = np.empty((*packed.shape[:-1], packed.shape[-1] * 2), np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out


def pack_zero_points(zero_points: np.ndarray, bits: int) -> np.ndarray:
    """MatMulNBits' uint8 zero points: [N, ceil(nb * bits / 8)], low nibble first for 4 bits."""
    if bits == 8:
        return zero_points
    if zero_points.shape[1] % 2:
        zero_points = np.pad(zero_points, ((0, 0), (0, 1)))
    return (zero_points[:, 0::2] | (zero_points[:, 1::2] << 4)).astype(np.uint8)

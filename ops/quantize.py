"""Block-wise weight quantization kernels (numpy), in the layout ONNX Runtime's MatMulNBits reads."""
from dataclasses import dataclass

import numpy as np

FP16_MAX = float(np.finfo(np.float16).max)
FP32_NOISE = 2.0**-20  # a float32 this close (relatively) to an fp16 value is taken to be that value


@dataclass(slots=True)
class QuantizedTensor:
    """A [N, K] weight as `bits`-bit codes on blocks of `block_size` along K.

    packed: uint8 [N, num_blocks, block_size * bits / 8], low nibble first for 4 bits.
    scales: float32 [N, num_blocks]. zero_points: None (symmetric: 2^(bits-1)), uint8 or float32 [N, num_blocks].
    As in ggml, the block parameters are fp16 values (held as float32) and the codes are chosen for them: each scale
    and, for float zero points, each block's centre (2^(bits-1) - zero_point) * scale, the value of its middle code
    (up to float32 rounding of that product). ggml's Q4_1 stores the min -zero_point * scale instead; on its grids
    the centre m + 8 d is almost always an fp16 value too.
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


def fp16_grid(x: np.ndarray, direction: int = 0) -> np.ndarray:
    """x rounded to an fp16 value, as float32 (how ggml stores block parameters): the nearest one, or with `direction`
    +1 / -1 the nearest one at or above / at or below x, unless x is within FP32_NOISE of the nearest one. Values
    beyond fp16's range are left as they are."""
    x = np.asarray(x, np.float32)
    with np.errstate(over="ignore"):
        half = x.astype(np.float16)
        if direction:
            nearest = half.astype(np.float32)
            missed = (nearest < x if direction > 0 else nearest > x) & (np.abs(nearest - x) > FP32_NOISE * np.abs(x))
            half = np.where(missed, np.nextafter(half, np.float16(direction * np.inf)), half)
        return np.where(np.abs(x) <= FP16_MAX, half.astype(np.float32), x)


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
    scales = fp16_grid(scales)
    return _symmetric_codes(blocks, scales, half), scales, None


def _search_symmetric(blocks, codes, scales, bits: int, refits: int = 2):
    """Per block, the scale with the least squared error among the default one, |max| / L for L a little below
    the top code, and least-squares refits, each rounded down and up to fp16; helps most on weights that already
    sit on a coarser grid."""
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
    """`best` (codes, scales, errors), replaced per block where `scales` rounded down or up to fp16 errs less."""
    for direction in (-1, 1):
        rounded = fp16_grid(scales, direction)
        codes = _symmetric_codes(blocks, rounded, half)
        err = _block_error(blocks, codes, rounded, np.float32(half))
        better = err < best[2]
        best = (np.where(better[..., None], codes, best[0]), np.where(better, rounded, best[1]),
                np.minimum(err, best[2]))
    return best


def _symmetric_codes(blocks, scales, half: int) -> np.ndarray:
    return np.clip(np.rint(blocks * _inverse(scales)[..., None]) + half, 0, 2 * half - 1).astype(np.uint8)


def _symmetric_refit(blocks, codes, scales, half: int) -> np.ndarray:
    q = codes.astype(np.float32) - half
    denominator = np.square(q).sum(-1)
    return np.where(denominator > 0, (q * blocks).sum(-1) / np.where(denominator > 0, denominator, 1), scales)


def _asymmetric(blocks: np.ndarray, bits: int, float_zero_point: bool):
    low, high = blocks.min(axis=-1), blocks.max(axis=-1)
    if float_zero_point:
        return _centred_fit(blocks, low, high, bits)
    low, high = np.minimum(low, 0.0), np.maximum(high, 0.0)  # an integer zero point is a code: the range holds 0
    scales = fp16_grid((high - low) / (2**bits - 1), +1)
    codes, zero = _integer_zero_codes(blocks, scales, low, bits)
    return codes, scales, zero


def _centred_fit(blocks, low, high, bits: int):
    """The fp16 centre of the range, then the fp16 scale that reaches both ends from it. A block that the unrounded
    centre reproduces and the fp16 one does not (a ggml Q4_1 block whose m + 8 d is no fp16 value) keeps the
    unrounded centre, and its tensor then stays fp32 in an ONNX artifact."""
    top, half = 2**bits - 1, 2 ** (bits - 1)
    exact_centres = low + half * (high - low) / top
    fits = []
    for centres in (fp16_grid(exact_centres), exact_centres):
        scales = fp16_grid(np.maximum((centres - low) / half, (high - centres) / (top - half)), +1)
        fits.append((*_centred_codes(blocks, scales, centres, bits), scales))
    noise = blocks.shape[-1] * np.square(FP32_NOISE * np.maximum(np.abs(low), np.abs(high)))
    errors = [_block_error(blocks, codes, scales, zero) for codes, zero, scales in fits]
    unrounded = (errors[1] <= noise) & (errors[0] > noise)
    (codes, zero, scales), (exact_codes, exact_zero, exact_scales) = fits
    return (np.where(unrounded[..., None], exact_codes, codes), np.where(unrounded, exact_scales, scales),
            np.where(unrounded, exact_zero, zero))


def _centred_codes(blocks, scales, centres, bits: int):
    """Codes and float zero points for w ~ (q - 2^(bits-1)) * scale + centre, the block's value at the middle code
    (an fp16 value, so that the ONNX target's block constant (2^(bits-1) - zero) * scale is one too)."""
    half = 2 ** (bits - 1)
    zero = (half - np.divide(centres, scales, out=np.zeros_like(scales), where=scales != 0)).astype(np.float32)
    return _codes(blocks, _inverse(scales), zero, bits), zero


def _integer_zero_codes(blocks, scales, offsets, bits: int):
    """Codes and integer zero points for w ~ q * scale + offset: -offset / scale rounded to a code."""
    inverse = _inverse(scales)
    zero = np.clip(np.rint(-offsets * inverse), 0, 2**bits - 1).astype(np.uint8)
    return _codes(blocks, inverse, zero, bits), zero


def _inverse(scales: np.ndarray) -> np.ndarray:
    return np.divide(1.0, scales, out=np.zeros_like(scales), where=scales != 0)


def _codes(blocks, inverse, zero, bits: int) -> np.ndarray:
    return np.clip(np.rint(blocks * inverse[..., None] + zero[..., None]), 0, 2**bits - 1).astype(np.uint8)


def _refine(blocks, codes, scales, zero_points, bits, iterations: int = 2):
    """Alternate a per-block least-squares fit of (scale, zero) with re-rounding; keep what lowers the error."""
    half = 2 ** (bits - 1)
    best = (codes, scales, zero_points)
    best_err = _block_error(blocks, *best)
    for _ in range(iterations):
        scale, offset = _least_squares(best[0].astype(np.float32), blocks)
        centre, scale = offset + half * scale, fp16_grid(scale)
        if zero_points.dtype == np.float32:
            new_codes, zero = _centred_codes(blocks, scale, fp16_grid(centre), bits)
        else:
            new_codes, zero = _integer_zero_codes(blocks, scale, offset, bits)
        candidate = (new_codes, scale, zero)
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

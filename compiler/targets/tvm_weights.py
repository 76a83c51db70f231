"""How the TVM lowering stores IR weights: the layouts its kernels (tvm_kernels.py) read.

Quantized weights stay packed: uint8 codes plus per-block fp32 scales and offsets, w = code * scale + offset
(offset = -zero_point * scale, so symmetric, integer and float zero points are one form).
- layout "kn" (cpu): [K, N] with N padded to a multiple of TILE, so kernels vectorize over output columns. 4-bit
  codes pack columns j and j + HALF of each TILE-column group into one byte (low nibble first): a group's codes are
  one 16-byte load and two shifts. scales/offsets: [K / block, N].
- layout "nk" (cuda): [N, K] as the IR holds them, 4-bit codes of k and k + 1 in one byte (low nibble first);
  scales/offsets: [N, K / block]. dlight's GEMV/matmul rules read this layout.
"""
from dataclasses import dataclass

import numpy as np

from ...ops.quantize import QuantizedTensor, unpack

TILE, HALF = 32, 16


@dataclass(slots=True)
class StoredWeight:
    """One IR weight as kernel operands: {"w"} (fp32) or {"codes", "scales", "offsets"}."""

    arrays: dict[str, np.ndarray]
    bits: int | None  # None: fp32
    block_size: int
    rows: int  # N: output features (vocabulary for an embedding)
    cols: int  # K: input features (hidden size for an embedding)
    layout: str

    @property
    def padded_rows(self) -> int:
        return padded(self.rows) if self.layout == "kn" else self.rows


def padded(n: int) -> int:
    return -(-n // TILE) * TILE


def store(weight: np.ndarray | QuantizedTensor, layout: str) -> StoredWeight:
    if isinstance(weight, QuantizedTensor):
        return _store_quantized(weight, layout)
    weight = np.asarray(weight, np.float32)
    rows, cols = weight.shape
    w = _pad_rows(weight, padded(rows)).T.copy() if layout == "kn" else np.ascontiguousarray(weight)
    return StoredWeight({"w": w}, None, 0, rows, cols, layout)


def _store_quantized(qt: QuantizedTensor, layout: str) -> StoredWeight:
    rows, cols = qt.shape
    codes = unpack(qt.packed, qt.bits).reshape(rows, -1)[:, :cols]  # [N, K]
    zero = np.float32(2 ** (qt.bits - 1)) if qt.zero_points is None else qt.zero_points.astype(np.float32)
    scales = qt.scales.astype(np.float32)
    offsets = (-zero * scales).astype(np.float32)
    if layout == "nk":
        if qt.bits == 4 and cols % 2:
            raise ValueError(f"4-bit weights need an even number of input features, not {cols}")
        packed = codes if qt.bits == 8 else (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
        arrays = {"codes": np.ascontiguousarray(packed), "scales": scales, "offsets": offsets}
    else:
        n = padded(rows)
        codes = _pad_rows(codes, n).T  # [K, Npad]
        if qt.bits == 4:
            groups = codes.reshape(cols, n // TILE, 2, HALF)
            codes = (groups[:, :, 0] | (groups[:, :, 1] << 4)).reshape(cols, n // 2)
        arrays = {"codes": np.ascontiguousarray(codes, np.uint8), "scales": _pad_rows(scales, n).T.copy(),
                  "offsets": _pad_rows(offsets, n).T.copy()}
    return StoredWeight(arrays, qt.bits, qt.block_size, rows, cols, layout)


def _pad_rows(a: np.ndarray, rows: int) -> np.ndarray:
    return a if a.shape[0] == rows else np.pad(a, ((0, rows - a.shape[0]), (0, 0)))

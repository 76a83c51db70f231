"""One row through a linear layer with its neighbours fused in: the batch-1 decode step's matmuls.

At batch 1 a decode step is a chain of matrix-vector products, each reading its weight once, with small
elementwise kernels between them (RMSNorm, silu(gate) * up, residual adds) that cost a launch each and no useful
bandwidth. `gemv` folds those into the matmul that reads the weight: the input's RMSNorm is computed as its chunks
are loaded, and the bias, the residual, the SwiGLU of (gate, up) row pairs or the rotary embedding of q/k row pairs
are applied before storing. Weights
are read in their stored format (bf16/fp16, int8 per output row, int4 in groups), so one kernel serves every ISQ
level.

On CUDA a Triton kernel (ops/triton_gemv.py), registered as a `triton_op` so that AOTInductor compiles it into the
package; elsewhere `gemv_reference`, the same arithmetic in torch (also the kernel's parity reference).
"""
import functools

import torch
import torch.nn.functional as F

from .weight_only import Int4Linear, Int8Linear, dequantize

DENSE, INT8, INT4 = 0, 1, 2


def gemv(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor | None = None, zeros: torch.Tensor | None = None,
         bias: torch.Tensor | None = None, rms_eps: float | None = None, norm_weight: torch.Tensor | None = None,
         swiglu: bool = False, rope: tuple | None = None, residual: torch.Tensor | None = None) -> torch.Tensor:
    """x [K] -> y [N] (or [N / 2] with swiglu).

    weight: [N, K] in x's dtype, or int8 codes [N, K] with `scales` [N], or int4 codes two a byte [N, K/2] (even k
    in the high nibble) with `scales` and `zeros` [N, K/G]: w = (q - 8) * scale + zero. rms_eps: RMS-normalise x
    first, times norm_weight if given (without it, the norm's weight is expected folded into W's columns, which
    saves the kernel a load). bias [N] is added to the product; then either swiglu (rows are (gate, up) pairs: y[i] =
    silu(y[2i]) * y[2i + 1]), or rope = (cos, sin [positions, D/2], position [1], rows, D): the first `rows` rows
    are heads of D rows in rotary pairs (y[2i], y[2i + 1]) of angle i mod D/2, rotated by the tables' row at
    `position` (read on the device, so that no lookup kernel runs first); a residual [N] may be added after either.
    """
    cos, sin, position, rope_rows, head_dim = rope if rope is not None else (None, None, None, 0, 0)
    if x.is_cuda:
        return gemv_kernel_op()(x, weight, scales, zeros, bias, norm_weight, residual, cos, sin, position, rms_eps,
                                swiglu, rope_rows, head_dim)
    return gemv_reference(x, weight, scales, zeros, bias, norm_weight, residual, cos, sin, position, rms_eps, swiglu,
                          rope_rows, head_dim)


def weight_format(weight: torch.Tensor) -> int:
    return {torch.int8: INT8, torch.uint8: INT4}.get(weight.dtype, DENSE)


def gemv_reference(x, weight, scales=None, zeros=None, bias=None, norm_weight=None, residual=None, cos=None, sin=None,
                   position=None, rms_eps=None, swiglu=False, rope_rows=0, head_dim=0):
    """gemv in torch, rounding to x's dtype where the kernel does (the matmul output, bias, result)."""
    dtype = x.dtype
    x = x.float()
    if rms_eps is not None:
        x = x * torch.rsqrt(x.pow(2).mean() + rms_eps)
        if norm_weight is not None:
            x = x * norm_weight.float()
    y = (dequantize(weight, scales, zeros) @ x).to(dtype)
    if bias is not None:
        y = (y.float() + bias.float()).to(dtype)
    if swiglu:
        gate, up = y.float().view(-1, 2).unbind(-1)
        y = (F.silu(gate) * up).to(dtype)
    if rope_rows:
        a, b = y[:rope_rows].float().view(-1, head_dim // 2, 2).unbind(-1)  # [heads, D/2] each
        cos, sin = (table[position].reshape(-1).to(dtype).float() for table in (cos, sin))
        rotated = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten()
        y = torch.cat([rotated.to(dtype), y[rope_rows:]])
    return y if residual is None else (y.float() + residual.float()).to(dtype)


def linear_operands(linear) -> dict:
    """gemv's weight arguments for a linear layer (nn.Linear, Int8Linear, Int4Linear) or a bare weight matrix."""
    if isinstance(linear, torch.Tensor):
        return {"weight": linear}
    if isinstance(linear, Int8Linear):
        return {"weight": linear.qweight, "scales": linear.scale, "bias": linear.bias}
    if isinstance(linear, Int4Linear):
        return {"weight": linear.qweight, "scales": linear.scales, "zeros": linear.zeros, "bias": linear.bias}
    return {"weight": linear.weight, "bias": linear.bias}


# (weight format, norm mode): rows a program, weights a chunk, warps; from bench/gpu_gemv.py on an H100 over the
# Llama-3.2-1B shapes, each timed as the decoder calls it (norm 1: q/k/v with rotary and gate/up with SwiGLU; norm 2:
# the LM head; 0: o and down with the residual). Rows come in pairs (SwiGLU, rotary), so every choice is even.
BLOCKS = {(DENSE, 0): (2, 1024, 4), (DENSE, 1): (8, 1024, 4), (DENSE, 2): (8, 1024, 4),
          (INT8, 0): (2, 2048, 4), (INT8, 1): (8, 512, 8), (INT8, 2): (8, 512, 4),
          (INT4, 0): (8, 2048, 8), (INT4, 1): (8, 512, 4), (INT4, 2): (8, 512, 4)}


def block_config(fmt: int, norm: int) -> dict:
    """The launch configuration for a weight format and norm mode (0 none, 1 RMS, 2 RMS times a norm weight)."""
    rows, chunk, warps = BLOCKS[fmt, norm]
    return {"BN": rows, "BK": chunk, "num_warps": warps, "num_stages": 1}


@functools.cache
def gemv_kernel_op():
    """The registered op (Triton is imported on first use: CPU-only installs do not have it)."""
    from . import triton_gemv

    @torch.library.triton_op("mistralrs::gemv", mutates_args=())
    def op(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor | None, zeros: torch.Tensor | None,
           bias: torch.Tensor | None, norm_weight: torch.Tensor | None, residual: torch.Tensor | None,
           cos: torch.Tensor | None, sin: torch.Tensor | None, position: torch.Tensor | None, rms_eps: float | None,
           swiglu: bool, rope_rows: int, head_dim: int) -> torch.Tensor:
        fmt, n = weight_format(weight), weight.shape[0]
        k = weight.shape[1] * (2 if fmt == INT4 else 1)
        group = k // scales.shape[1] if fmt == INT4 else 1
        y = torch.empty(n // 2 if swiglu else n, dtype=x.dtype, device=x.device)
        norm = 0 if rms_eps is None else 1 if norm_weight is None else 2
        config = block_config(fmt, norm)
        unused = x  # a pointer the kernel never reads (its flag is off)
        torch.library.wrap_triton(triton_gemv.gemv_kernel)[((n + config["BN"] - 1) // config["BN"],)](
            x, weight, unused if scales is None else scales, unused if zeros is None else zeros,
            unused if bias is None else bias, unused if norm_weight is None else norm_weight,
            unused if residual is None else residual, unused if cos is None else cos, unused if sin is None else sin,
            unused if position is None else position, y, n, k, rope_rows, FORMAT=fmt, G=group, NORM=norm,
            EPS=rms_eps or 0.0, BIAS=bias is not None, SWIGLU=swiglu, ROPE=rope_rows > 0, HEAD_DIM=max(head_dim, 2),
            RESIDUAL=residual is not None, **config)
        return y

    return op

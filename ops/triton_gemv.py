"""The Triton kernel of ops/gemv.py. This module imports Triton at the top: import it only where Triton is (CUDA,
or Triton's CPU interpreter, TRITON_INTERPRET=1).

One program computes BN outputs of y = x @ W.T for a single row x, streaming its BN rows of W along K in chunks:
W is read once, in its stored format, and the RMSNorm of x, the bias, the rotary embedding of q/k pairs, the
residual and the SwiGLU of gate/up pairs ride on that one pass. Pipelining stages do not help these loops (no
tl.dot), so latency is hidden by running many narrow programs.
"""
import triton
import triton.language as tl

ONE = tl.constexpr(0x3F800000)  # the bits of 1.0: a 4-bit code q OR-ed in at bit 19 reads as the float 1 + q / 16
CODE_BITS = tl.constexpr(0x00780000)


@triton.jit
def gemv_kernel(x_ptr, w_ptr, s_ptr, z_ptr, bias_ptr, norm_ptr, res_ptr, cos_ptr, sin_ptr, pos_ptr, y_ptr, N, K,
                rope_rows, FORMAT: tl.constexpr, G: tl.constexpr, NORM: tl.constexpr, EPS: tl.constexpr,
                BIAS: tl.constexpr, SWIGLU: tl.constexpr, ROPE: tl.constexpr, HEAD_DIM: tl.constexpr,
                RESIDUAL: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """FORMAT 0: W [N, K] in x's dtype. 1: int8 codes [N, K], y scaled by s[n]. 2: two int4 codes a byte [N, K/2]
    (even k in the high nibble), w = (q - 8) * s + z with s, z [N, K/G]; BK counts weights, a multiple of G.
    NORM 1: x is RMS-normalised (the 1/rms factor is applied to y, so the squares are summed in the same pass);
    2: and multiplied by norm[k] (1 suits weights with the norm's weight folded into their columns).
    SWIGLU: rows come in (gate, up) pairs and y[n / 2] = silu(gate) * up. ROPE: rows below rope_rows come in rotary
    pairs (a, b) of heads of HEAD_DIM rows, rotated by row pos[0] of the cos/sin tables [positions, HEAD_DIM / 2]
    (rounded to y's dtype, as the unfused graph casts them)."""
    rows = tl.program_id(0) * BN + tl.arange(0, BN)
    live = rows < N
    if FORMAT == 2:
        # [BN, groups, G/2] tiles of bytes; per group: s * sum((q - 8) x) + z * sum(x), summed over groups once
        groups, half = tl.arange(0, BK // G), tl.arange(0, G // 2)
        acc = tl.zeros((BN, BK // G), tl.float32)
        squares = tl.zeros((BK // G, G // 2), tl.float32)
        for g0 in range(0, K // G, BK // G):
            gs = g0 + groups
            pairs = gs[:, None] * (G // 2) + half[None, :]
            in_x = (gs < K // G)[:, None]
            x_even = tl.load(x_ptr + 2 * pairs, mask=in_x, other=0.0).to(tl.float32)
            x_odd = tl.load(x_ptr + 2 * pairs + 1, mask=in_x, other=0.0).to(tl.float32)
            if NORM:
                squares += x_even * x_even + x_odd * x_odd
            if NORM == 2:
                x_even *= tl.load(norm_ptr + 2 * pairs, mask=in_x, other=0.0).to(tl.float32)
                x_odd *= tl.load(norm_ptr + 2 * pairs + 1, mask=in_x, other=0.0).to(tl.float32)
            in_w = live[:, None] & (gs < K // G)[None, :]
            packed = tl.load(w_ptr + rows[:, None, None] * (K // 2) + pairs[None, :, :], mask=in_w[:, :, None],
                             other=0).to(tl.int32)
            # c = 1 + q / 16 costs a shift and a mask a code; sum((q - 8) x) = 16 sum(c x) - 24 sum(x)
            high = ((packed << 15) & CODE_BITS | ONE).to(tl.float32, bitcast=True)
            low = ((packed << 19) & CODE_BITS | ONE).to(tl.float32, bitcast=True)
            dots = tl.sum(high * x_even[None] + low * x_odd[None], 2)
            scale_at = rows[:, None] * (K // G) + gs[None, :]
            s = tl.load(s_ptr + scale_at, mask=in_w, other=0.0).to(tl.float32)
            z = tl.load(z_ptr + scale_at, mask=in_w, other=0.0).to(tl.float32)
            acc += 16 * s * dots + (z - 24 * s) * tl.sum(x_even + x_odd, 1)[None, :]
        y = tl.sum(acc, 1)
        sum_squares = tl.sum(tl.sum(squares, 1), 0)
    else:
        acc = tl.zeros((BN, BK), tl.float32)
        squares = tl.zeros((BK,), tl.float32)
        for k0 in range(0, K, BK):
            ks = k0 + tl.arange(0, BK)
            x = tl.load(x_ptr + ks, mask=ks < K, other=0.0).to(tl.float32)
            if NORM:
                squares += x * x
            if NORM == 2:
                x *= tl.load(norm_ptr + ks, mask=ks < K, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + rows[:, None] * K + ks[None, :], mask=live[:, None] & (ks < K)[None, :], other=0)
            acc += w.to(tl.float32) * x[None, :]
        y = tl.sum(acc, 1)
        if FORMAT == 1:
            y = y * tl.load(s_ptr + rows, mask=live, other=0.0).to(tl.float32)
        sum_squares = tl.sum(squares, 0)
    if NORM:
        y = y / tl.sqrt(sum_squares / K + EPS)
    out_dtype = y_ptr.dtype.element_ty
    y = y.to(out_dtype).to(tl.float32)  # where the unfused graph stores the matmul's output
    if BIAS:
        y = (y + tl.load(bias_ptr + rows, mask=live, other=0.0).to(tl.float32)).to(out_dtype).to(tl.float32)
    if ROPE:
        a, b = tl.split(tl.reshape(y, (BN // 2, 2)))
        pair_rows = tl.program_id(0) * BN + 2 * tl.arange(0, BN // 2)
        angle = (pair_rows % HEAD_DIM) // 2
        rotated = pair_rows < rope_rows
        angle += tl.load(pos_ptr).to(tl.int32) * (HEAD_DIM // 2)
        cos = tl.load(cos_ptr + angle, mask=rotated, other=1.0).to(out_dtype).to(tl.float32)
        sin = tl.load(sin_ptr + angle, mask=rotated, other=0.0).to(out_dtype).to(tl.float32)
        y = tl.reshape(tl.join(a * cos - b * sin, b * cos + a * sin), (BN,))
    if SWIGLU:
        gate, up = tl.split(tl.reshape(y, (BN // 2, 2)))
        outs = tl.program_id(0) * (BN // 2) + tl.arange(0, BN // 2)
        tl.store(y_ptr + outs, (gate * tl.sigmoid(gate) * up).to(out_dtype), mask=outs < N // 2)
    else:
        if RESIDUAL:
            y += tl.load(res_ptr + rows, mask=live, other=0.0).to(tl.float32)
        tl.store(y_ptr + rows, y.to(out_dtype), mask=live)

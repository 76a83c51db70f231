"""The Triton kernel of ops/weight_only.py's CUDA matmuls. This module imports Triton at the top: import it only
where Triton is (CUDA, or Triton's CPU interpreter, TRITON_INTERPRET=1).

y[m, n] = sum_k x[m, k] * w[n, k] with w read in its stored format and converted to x's dtype inside the kernel,
so each step reads the compact weight once (Inductor's lowering of `linear(x, dequantized(w))` would first write a
full-width copy of the weight to memory). Narrow 16-column tiles give enough programs to stream the weights.
"""
import triton
import triton.language as tl


@triton.jit
def matmul_kernel(x_ptr, w_ptr, s_ptr, z_ptr, y_ptr, M, N, K, stride_xm, stride_ym,
                  FORMAT: tl.constexpr, G: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """FORMAT 1: int8 codes [N, K], y scaled by s[n]. 2: two int4 codes a byte [N, K/2] (even k in the high
    nibble), w = (q - 8) * s + z with s, z [N, K/G]."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for start in range(0, K, BK):
        ks = start + tl.arange(0, BK)
        x = tl.load(x_ptr + rows[:, None] * stride_xm + ks[None, :], mask=(rows[:, None] < M) & (ks[None, :] < K),
                    other=0.0)
        in_w = (cols[None, :] < N) & (ks[:, None] < K)
        if FORMAT == 2:
            packed = tl.load(w_ptr + cols[None, :] * (K // 2) + (ks // 2)[:, None], mask=in_w, other=0)
            codes = (packed >> ((1 - ks % 2) * 4)[:, None].to(tl.uint8)) & 15
            scale_at = cols[None, :] * (K // G) + (ks // G)[:, None]
            s = tl.load(s_ptr + scale_at, mask=in_w, other=0.0).to(tl.float32)
            z = tl.load(z_ptr + scale_at, mask=in_w, other=0.0).to(tl.float32)
            w = ((codes.to(tl.float32) - 8) * s + z).to(x.dtype)
        else:
            w = tl.load(w_ptr + cols[None, :] * K + ks[:, None], mask=in_w, other=0).to(x.dtype)
        acc += tl.dot(x, w)
    if FORMAT == 1:
        acc *= tl.load(s_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))

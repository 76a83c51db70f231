"""Weight-only int8 matmul on CUDA: a Triton kernel registered as a torch `triton_op`, so torch.export keeps it and
AOTInductor compiles the kernel into the package (no op registry needed where the package is loaded).

y[m, n] = scale[n] * sum_k x[m, k] * q[n, k]: the int8 codes are converted to the activation dtype inside the
kernel, so each step reads one byte per weight (Inductor's lowering of `linear(x, q.to(bf16))` first writes the bf16
copy of the weight out to memory). Narrow 16-column tiles give enough blocks to stream the weights at batch 1.
"""
import functools

import torch

BLOCK_M, BLOCK_N, BLOCK_K = 16, 16, 256


@functools.cache
def int8_linear():
    """The registered op (Triton is imported on first use: CPU-only installs do not have it)."""
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(x_ptr, w_ptr, s_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.program_id(1) * BN + tl.arange(0, BN)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for start in range(0, K, BK):
            ks = start + tl.arange(0, BK)
            x = tl.load(x_ptr + rows[:, None] * stride_xm + ks[None, :],
                        mask=(rows[:, None] < M) & (ks[None, :] < K), other=0.0)
            w = tl.load(w_ptr + cols[None, :] * stride_wn + ks[:, None],
                        mask=(cols[None, :] < N) & (ks[:, None] < K), other=0)
            acc += tl.dot(x, w.to(x.dtype))
        scale = tl.load(s_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
        out = (acc * scale[None, :]).to(y_ptr.dtype.element_ty)
        tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :], out, mask=(rows[:, None] < M) & (cols[None, :] < N))

    @torch.library.triton_op("mistralrs::int8_linear", mutates_args=())
    def op(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        rows, k = x.shape
        n = qweight.shape[0]
        y = torch.empty((rows, n), dtype=x.dtype, device=x.device)

        def grid(meta):
            return (triton.cdiv(rows, meta["BM"]), triton.cdiv(n, meta["BN"]))

        torch.library.wrap_triton(kernel)[grid](x, qweight, scale, y, rows, n, k, x.stride(0), qweight.stride(0),
                                                y.stride(0), BM=BLOCK_M, BN=BLOCK_N, BK=BLOCK_K)
        return y

    return op

"""Decode attention: one new query token per sequence against its cached keys plus its own new key.

The step's new key and value are not in the cache yet (the decoder writes every layer's at the end of the step, in
one scatter), so the kernel reads cache positions < past[b] and takes the new token from its own tensors. GQA: the
G query heads of a KV head share each loaded key block.

On CUDA a Triton flash-decoding kernel (a `triton_op`, compiled into AOTInductor packages): the cached positions are
split across programs so that a batch-1 step still fills the GPU, each program keeps a running max and sum, and a
second kernel merges the splits. Elsewhere the reference below, which is also the kernel's parity reference.
"""
import functools
import math

import torch

BLOCK_N = 32
MAX_SPLITS = 32
TARGET_PROGRAMS = 256  # about two programs per SM on an H100/H200
KERNEL_HEAD_DIMS = (16, 32, 64, 128, 256)  # tl.dot needs power-of-two sizes of at least 16


def decode_attention(q, k_new, v_new, k_cache, v_cache, past):
    """q [B, H, D], k_new/v_new [B, KV, D], k_cache/v_cache [B, KV, M, D] (valid below past[b]), past [B] int64
    -> [B, H, D]."""
    if q.is_cuda and q.shape[-1] in KERNEL_HEAD_DIMS:
        return decode_attention_kernel()(q, k_new, v_new, k_cache, v_cache, past)
    return decode_attention_reference(q, k_new, v_new, k_cache, v_cache, past)


def decode_attention_reference(q, k_new, v_new, k_cache, v_cache, past):
    batch, num_heads, head_dim = q.shape
    num_kv, max_len = k_cache.shape[1], k_cache.shape[2]
    q = q.view(batch, num_kv, num_heads // num_kv, head_dim)  # [B, KV, G, D]
    scale = 1 / math.sqrt(head_dim)
    cached = (q @ k_cache.transpose(-1, -2)) * scale  # [B, KV, G, M]
    visible = torch.arange(max_len, device=q.device) < past[:, None]
    cached = cached.masked_fill(~visible[:, None, None, :], float("-inf"))
    own = (q * k_new[:, :, None]).sum(-1, keepdim=True) * scale  # [B, KV, G, 1]
    probs = torch.cat([cached, own], dim=-1).float().softmax(-1).to(q.dtype)
    out = probs[..., :max_len] @ v_cache + probs[..., max_len:] * v_new[:, :, None]
    return out.reshape(batch, num_heads, head_dim)


@functools.cache
def decode_attention_kernel():
    """The registered op (Triton is imported on first use: CPU-only installs do not have it). The kernels call no
    helper functions: Inductor copies each kernel's source into the package without its closure."""
    import triton
    import triton.language as tl

    @triton.jit
    def partial_kernel(q_ptr, kn_ptr, vn_ptr, kc_ptr, vc_ptr, past_ptr, m_ptr, l_ptr, acc_ptr, num_kv, sm_scale,
                       stride_qb, stride_nb, stride_cb, stride_ch, stride_cm,
                       G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, BN: tl.constexpr, SPLITS: tl.constexpr,
                       TARGET: tl.constexpr):
        row, split = tl.program_id(0), tl.program_id(1)  # row = b * KV + kv
        splits = tl.maximum(1, tl.minimum(SPLITS, TARGET // tl.num_programs(0)))  # as in merge_kernel
        if split < splits:
            b, kv = row // num_kv, row % num_kv
            past = tl.load(past_ptr + b).to(tl.int32)
            total = past + 1
            chunk = tl.cdiv(tl.cdiv(total, splits), BN) * BN
            start, end = split * chunk, tl.minimum(split * chunk + chunk, total)
            heads, dims = tl.arange(0, GP), tl.arange(0, D)
            q = tl.load(q_ptr + b * stride_qb + (kv * G + heads)[:, None] * D + dims[None, :],
                        mask=heads[:, None] < G, other=0.0)
            k_own = tl.load(kn_ptr + b * stride_nb + kv * D + dims)
            v_own = tl.load(vn_ptr + b * stride_nb + kv * D + dims)
            cache = b * stride_cb + kv * stride_ch
            m_i = tl.full((GP,), float("-inf"), tl.float32)
            l_i = tl.zeros((GP,), tl.float32)
            acc = tl.zeros((GP, D), tl.float32)
            for n0 in range(start, end, BN):
                pos = n0 + tl.arange(0, BN)
                cached = (pos < past)[:, None]
                offsets = cache + pos[:, None] * stride_cm + dims[None, :]
                own = (pos == past)[:, None]
                k = tl.where(own, k_own[None, :], tl.load(kc_ptr + offsets, mask=cached, other=0.0))
                v = tl.where(own, v_own[None, :], tl.load(vc_ptr + offsets, mask=cached, other=0.0))
                s = (tl.dot(q, tl.trans(k)) * sm_scale).to(tl.float32)  # AOTInductor passes sm_scale as fp64
                s = tl.where((pos < end)[None, :], s, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(s, 1))
                p = tl.exp(s - m_new[:, None])
                alpha = tl.exp(m_i - m_new)
                l_i = l_i * alpha + tl.sum(p, 1)
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
                m_i = m_new
            out = (row * SPLITS + split) * G + heads
            tl.store(m_ptr + out, m_i, mask=heads < G)
            tl.store(l_ptr + out, l_i, mask=heads < G)
            tl.store(acc_ptr + out[:, None] * D + dims[None, :], acc, mask=heads[:, None] < G)

    @triton.jit
    def merge_kernel(m_ptr, l_ptr, acc_ptr, out_ptr, num_rows, G: tl.constexpr, D: tl.constexpr,
                     SPLITS: tl.constexpr, TARGET: tl.constexpr):
        head = tl.program_id(0)  # b * H + h = (b * KV + kv) * G + g
        row, g = head // G, head % G
        splits = tl.arange(0, SPLITS)
        used = splits < tl.maximum(1, tl.minimum(SPLITS, TARGET // num_rows))  # as in partial_kernel
        index = (row * SPLITS + splits) * G + g
        m = tl.load(m_ptr + index, mask=used, other=float("-inf"))
        l_s = tl.load(l_ptr + index, mask=used, other=0.0)
        dims = tl.arange(0, D)
        acc = tl.load(acc_ptr + index[:, None] * D + dims[None, :], mask=used[:, None], other=0.0)
        weights = tl.exp(m - tl.max(m, 0))
        out = tl.sum(weights[:, None] * acc, 0) / tl.sum(weights * l_s, 0)
        tl.store(out_ptr + head * D + dims, out.to(out_ptr.dtype.element_ty))

    @torch.library.triton_op("mistralrs::decode_attention", mutates_args=())
    def op(q: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
           past: torch.Tensor) -> torch.Tensor:
        batch, num_heads, head_dim = q.shape
        num_kv = k_cache.shape[1]
        group = num_heads // num_kv
        q, k_new, v_new = q.contiguous(), k_new.contiguous(), v_new.contiguous()
        rows = batch * num_kv
        m = torch.empty((rows, MAX_SPLITS, group), dtype=torch.float32, device=q.device)
        l_sum = torch.empty_like(m)
        acc = torch.empty((rows, MAX_SPLITS, group, head_dim), dtype=torch.float32, device=q.device)
        out = torch.empty_like(q)
        torch.library.wrap_triton(partial_kernel)[(rows, MAX_SPLITS)](
            q, k_new, v_new, k_cache, v_cache, past, m, l_sum, acc, num_kv, 1 / math.sqrt(head_dim),
            q.stride(0), k_new.stride(0), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
            G=group, GP=max(16, triton.next_power_of_2(group)), D=head_dim, BN=BLOCK_N, SPLITS=MAX_SPLITS,
            TARGET=TARGET_PROGRAMS)
        torch.library.wrap_triton(merge_kernel)[(batch * num_heads,)](
            m, l_sum, acc, out, rows, G=group, D=head_dim, SPLITS=MAX_SPLITS, TARGET=TARGET_PROGRAMS)
        return out

    return op

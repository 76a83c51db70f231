"""Decode attention: the reference against plain softmax attention over the concatenated keys (CPU), and the
Triton kernel against the reference on CUDA (`-m gpu`) over ragged lengths, long caches and several GQA groups."""
import math

import pytest
import torch

from mistralrs.ops.decode_attention import decode_attention, decode_attention_reference


def _inputs(batch, num_heads, num_kv, head_dim, max_len, past, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    return (randn(batch, num_heads, head_dim), randn(batch, num_kv, head_dim), randn(batch, num_kv, head_dim),
            randn(batch, num_kv, max_len, head_dim), randn(batch, num_kv, max_len, head_dim),
            torch.tensor(past, device=device))


def _plain(q, k_new, v_new, k_cache, v_cache, past):
    """Per row and head: softmax over the first past[b] cached keys and the new key, in float64."""
    batch, num_heads, head_dim = q.shape
    group = num_heads // k_cache.shape[1]
    out = torch.empty(q.shape, dtype=torch.float64)
    for b in range(batch):
        for h in range(num_heads):
            kv, n = h // group, int(past[b])
            keys = torch.cat([k_cache[b, kv, :n], k_new[b, kv, None]]).double()
            values = torch.cat([v_cache[b, kv, :n], v_new[b, kv, None]]).double()
            weights = (keys @ q[b, h].double() / math.sqrt(head_dim)).softmax(0)
            out[b, h] = weights @ values
    return out


def test_reference_matches_plain_attention():
    inputs = _inputs(3, 8, 2, 16, 40, [0, 17, 39])
    assert (decode_attention_reference(*inputs).double() - _plain(*inputs)).abs().max() < 1e-5


def test_reference_ignores_cache_positions_past_the_length():
    q, k_new, v_new, k_cache, v_cache, past = _inputs(2, 4, 2, 16, 24, [5, 9])
    garbage = k_cache.clone(), v_cache.clone()
    garbage[0][:, :, 10:] = 1e4
    garbage[1][:, :, 10:] = -1e4
    assert torch.equal(decode_attention_reference(q, k_new, v_new, k_cache, v_cache, past),
                       decode_attention_reference(q, k_new, v_new, *garbage, past))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("shape", [(1, 32, 8, 64, 4096, [2000]),  # Llama-3.2-1B heads, long cache, 32 splits
                                   (5, 9, 3, 64, 300, [0, 1, 31, 32, 299]),  # G = 3 (padded), split edges
                                   (64, 4, 2, 16, 48, [i % 47 for i in range(64)]),  # batch 64: one split a row
                                   (2, 16, 16, 128, 1000, [999, 500])])  # no GQA, head_dim 128
def test_kernel_matches_reference(shape):
    batch, num_heads, num_kv, head_dim, max_len, past = shape
    inputs = _inputs(batch, num_heads, num_kv, head_dim, max_len, past, torch.bfloat16, "cuda")
    out = decode_attention(*inputs).float().cpu()
    reference = _plain(*(t.cpu().float() if t.is_floating_point() else t.cpu() for t in inputs))
    assert out.shape == (batch, num_heads, head_dim)
    assert (out.double() - reference).abs().max() < 2e-2  # bf16 inputs and output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kernel_reads_a_strided_cache_layer():
    """The decoder passes k_cache[:, layer] of a [B, L, KV, M, D] cache: batch stride L * KV * M * D."""
    q, k_new, v_new, _, _, past = _inputs(3, 8, 2, 64, 64, [10, 63, 0], torch.bfloat16, "cuda")
    g = torch.Generator().manual_seed(1)
    caches = [torch.randn(3, 4, 2, 64, 64, generator=g).to("cuda", torch.bfloat16) for _ in range(2)]
    out = decode_attention(q, k_new, v_new, caches[0][:, 2], caches[1][:, 2], past)
    reference = decode_attention_reference(q, k_new, v_new, caches[0][:, 2].contiguous(),
                                           caches[1][:, 2].contiguous(), past)
    assert (out.float() - reference.float()).abs().max() < 2e-2

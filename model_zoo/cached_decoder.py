"""An exportable decoder over a dense KV cache: the entry point the inductor backend compiles.

It reuses DecoderLM's modules and weights (same parameter names), adds rotary tables as buffers, and writes each
step's keys and values into the caller's cache in place. Every shape decision is tensor arithmetic, so torch.export
traces it with symbolic batch, sequence and cache lengths.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .decoder import Attention, DecoderLM, DecoderLayer, rotate
from .rope import cos_sin_tables


class CachedDecoder(nn.Module):
    """forward(token_ids [B, S], past_lengths [B], k_cache, v_cache) -> logits [B, V] (fp32) of each row's last token.

    k_cache, v_cache: [B, L, KV, M, D]. Row b appends S tokens at positions past_lengths[b] .. + S - 1 (all < M).
    """

    def __init__(self, lm: DecoderLM, max_positions: int | None = None):
        super().__init__()
        self.cfg = lm.cfg
        self.model = lm.model
        if not self.cfg.tie_word_embeddings:
            self.lm_head = lm.lm_head
        cos, sin = cos_sin_tables(self.cfg, max_positions or self.cfg.max_position_embeddings)
        device = self.model.embed_tokens.weight.device
        self.register_buffer("rope_cos", torch.from_numpy(cos).to(device))
        self.register_buffer("rope_sin", torch.from_numpy(sin).to(device))

    def forward(self, token_ids, past_lengths, k_cache, v_cache):
        seq = token_ids.shape[1]
        positions = past_lengths[:, None] + torch.arange(seq, device=token_ids.device)  # [B, S]
        dtype = self.model.embed_tokens.weight.dtype
        cos, sin = self.rope_cos[positions].to(dtype), self.rope_sin[positions].to(dtype)  # [B, S, D/2]
        # mask[b, 0, s, m]: cache position m is visible to the query at positions[b, s]
        mask = torch.arange(k_cache.shape[3], device=token_ids.device) <= positions[:, None, :, None]
        x = self.model.embed_tokens(token_ids)
        for index, layer in enumerate(self.model.layers):
            cache = (k_cache[:, index], v_cache[:, index], positions)
            x = _layer_forward(layer, x, cos, sin, mask, cache)
        x = self.model.norm(x[:, -1])
        logits = self.lm_head(x) if hasattr(self, "lm_head") else x @ self.model.embed_tokens.weight.T
        return logits.float()


def _layer_forward(layer: DecoderLayer, x, cos, sin, mask, cache):
    x = x + _attention(layer.self_attn, layer.input_layernorm(x), cos, sin, mask, cache)
    return x + layer.mlp(layer.post_attention_layernorm(x))


def _attention(attn: Attention, x, cos, sin, mask, cache):
    cfg, (batch, seq, _) = attn.cfg, x.shape
    k_cache, v_cache, positions = cache  # k_cache: [B, KV, M, D]
    q = attn.q_proj(x).view(batch, seq, cfg.num_heads, cfg.head_dim)
    k = attn.k_proj(x).view(batch, seq, cfg.num_kv_heads, cfg.head_dim)
    v = attn.v_proj(x).view(batch, seq, cfg.num_kv_heads, cfg.head_dim)
    if cfg.qk_norm:
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    rows = torch.arange(batch, device=x.device)[:, None]
    k_cache[rows, :, positions] = k  # advanced indices on dims 0 and 2: the value is [B, S, KV, D]
    v_cache[rows, :, positions] = v
    out = _grouped_attention(q, k_cache, v_cache, mask, cfg.num_kv_heads)
    return attn.o_proj(out.reshape(batch, seq, cfg.q_size))


def _grouped_attention(q, k_cache, v_cache, mask, num_kv_heads: int):
    """GQA without repeating the cache: the G query heads of a KV head become G * S query rows of it."""
    batch, seq, num_heads, head_dim = q.shape
    group = num_heads // num_kv_heads
    q = q.view(batch, seq, num_kv_heads, group, head_dim).permute(0, 2, 3, 1, 4)
    q = q.reshape(batch, num_kv_heads, group * seq, head_dim)
    rows_mask = mask.expand(batch, group, seq, mask.shape[-1]).reshape(batch, 1, group * seq, mask.shape[-1])
    out = F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=rows_mask)  # [B, KV, G*S, D]
    out = out.view(batch, num_kv_heads, group, seq, head_dim).permute(0, 3, 1, 2, 4)
    return out  # [B, S, KV, G, D] = [B, S, H, D] in HF head order

"""An exportable decoder over a dense KV cache: the entry point the inductor backend compiles.

It takes DecoderLM's modules and weights, with each layer's q/k/v and gate/up projections concatenated into one
matmul each (PackedLayer), adds rotary tables as buffers, and writes each step's keys and values into the caller's
cache in place. A decode step (one token a row) attends with ops/decode_attention.py over the cache plus the new
token and writes all layers' new keys and values in one scatter at the end; a prefill writes each layer's before
attending. Every shape decision is tensor arithmetic, so torch.export traces it with symbolic batch, sequence and
cache lengths.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..ops.decode_attention import decode_attention
from .decoder import DecoderLM, DecoderLayer, rotate
from .rope import cos_sin_tables


class CachedDecoder(nn.Module):
    """forward(token_ids [B, S], past_lengths [B], k_cache, v_cache) -> logits [B, V] (fp32) of each row's last token.

    k_cache, v_cache: [B, L, KV, M, D]. Row b appends S tokens at positions past_lengths[b] .. + S - 1 (all < M).
    """

    def __init__(self, lm: DecoderLM, max_positions: int | None = None):
        super().__init__()
        self.cfg = lm.cfg
        self.embed_tokens = lm.model.embed_tokens
        self.layers = nn.ModuleList(PackedLayer(layer) for layer in lm.model.layers)
        self.norm = lm.model.norm
        if not self.cfg.tie_word_embeddings:
            self.lm_head = lm.lm_head
        cos, sin = cos_sin_tables(self.cfg, max_positions or self.cfg.max_position_embeddings)
        device = self.embed_tokens.weight.device
        self.register_buffer("rope_cos", torch.from_numpy(cos).to(device))
        self.register_buffer("rope_sin", torch.from_numpy(sin).to(device))

    def forward(self, token_ids, past_lengths, k_cache, v_cache):
        seq = token_ids.shape[1]
        positions = past_lengths[:, None] + torch.arange(seq, device=token_ids.device)  # [B, S]
        dtype = self.embed_tokens.weight.dtype
        cos, sin = self.rope_cos[positions].to(dtype), self.rope_sin[positions].to(dtype)  # [B, S, D/2]
        x = self.embed_tokens(token_ids)
        if seq == 1:
            x = self._decode_layers(x, cos, sin, past_lengths, k_cache, v_cache)
        else:
            # mask[b, 0, s, m]: cache position m is visible to the query at positions[b, s]
            mask = torch.arange(k_cache.shape[3], device=token_ids.device) <= positions[:, None, :, None]
            for index, layer in enumerate(self.layers):
                x = layer.prefill(x, cos, sin, mask, k_cache[:, index], v_cache[:, index], positions)
        x = self.norm(x[:, -1])
        logits = self.lm_head(x) if hasattr(self, "lm_head") else x @ self.embed_tokens.weight.T
        return logits.float()

    def _decode_layers(self, x, cos, sin, past_lengths, k_cache, v_cache):
        new_keys, new_values = [], []
        for index, layer in enumerate(self.layers):
            x, k, v = layer.decode(x, cos, sin, past_lengths, k_cache[:, index], v_cache[:, index])
            new_keys.append(k)
            new_values.append(v)
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        position = past_lengths[:, None]
        k_cache[rows, :, :, position] = torch.stack(new_keys, dim=1)[:, None]  # [B, 1, L, KV, D]
        v_cache[rows, :, :, position] = torch.stack(new_values, dim=1)[:, None]
        return x


class PackedLayer(nn.Module):
    """A decoder layer with q/k/v and gate/up each as one linear (outputs concatenated in that order)."""

    def __init__(self, layer: DecoderLayer):
        super().__init__()
        attn, mlp = layer.self_attn, layer.mlp
        self.cfg = attn.cfg
        self.input_layernorm, self.post_attention_layernorm = layer.input_layernorm, layer.post_attention_layernorm
        self.qkv_proj = concat_linears(attn.q_proj, attn.k_proj, attn.v_proj)
        self.o_proj = attn.o_proj
        if self.cfg.qk_norm:
            self.q_norm, self.k_norm = attn.q_norm, attn.k_norm
        self.gate_up_proj = concat_linears(mlp.gate_proj, mlp.up_proj)
        self.down_proj = mlp.down_proj

    def prefill(self, x, cos, sin, mask, k_cache, v_cache, positions):
        """k_cache: [B, KV, M, D], written at `positions` [B, S] before attending."""
        q, k, v = self._qkv(self.input_layernorm(x), cos, sin)
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        k_cache[rows, :, positions] = k  # advanced indices on dims 0 and 2: the value is [B, S, KV, D]
        v_cache[rows, :, positions] = v
        out = _grouped_attention(q, k_cache, v_cache, mask, self.cfg.num_kv_heads)
        return self._rest(x, out.reshape(*x.shape[:2], self.cfg.q_size))

    def decode(self, x, cos, sin, past_lengths, k_cache, v_cache):
        """One token a row; returns the layer output and the token's k, v [B, KV, D] for the caller to cache."""
        q, k, v = self._qkv(self.input_layernorm(x), cos, sin)
        k, v = k[:, 0], v[:, 0]
        out = decode_attention(q[:, 0], k, v, k_cache, v_cache, past_lengths)
        return self._rest(x, out.reshape(x.shape[0], 1, self.cfg.q_size)), k, v

    def _qkv(self, x, cos, sin):
        cfg, (batch, seq, _) = self.cfg, x.shape
        q, k, v = self.qkv_proj(x).split([cfg.q_size, cfg.kv_size, cfg.kv_size], dim=-1)
        q = q.reshape(batch, seq, cfg.num_heads, cfg.head_dim)
        k = k.reshape(batch, seq, cfg.num_kv_heads, cfg.head_dim)
        v = v.reshape(batch, seq, cfg.num_kv_heads, cfg.head_dim)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        return rotate(q, cos, sin), rotate(k, cos, sin), v

    def _rest(self, x, attention):
        """The output projection, residual, and the MLP block."""
        x = x + self.o_proj(attention)
        gate, up = self.gate_up_proj(self.post_attention_layernorm(x)).chunk(2, dim=-1)
        return x + self.down_proj(F.silu(gate) * up)


def concat_linears(*linears: nn.Linear) -> nn.Linear:
    weight = torch.cat([linear.weight.data for linear in linears])
    packed = nn.Linear(weight.shape[1], weight.shape[0], bias=linears[0].bias is not None, device="meta")
    packed.weight = nn.Parameter(weight, requires_grad=False)
    if packed.bias is not None:
        packed.bias = nn.Parameter(torch.cat([linear.bias.data for linear in linears]), requires_grad=False)
    return packed


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

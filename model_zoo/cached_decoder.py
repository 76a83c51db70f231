"""An exportable decoder over a dense KV cache: the entry point the inductor backend compiles.

It takes DecoderLM's modules and weights, with each layer's q/k/v projections concatenated into one matmul and its
gate/up projections interleaved row by row into another (PackedLayer), adds rotary tables as buffers, and writes
each step's keys and values into the caller's cache in place. A decode step (one token a row) attends with
ops/decode_attention.py over the cache plus the new token and writes all layers' new keys and values in one scatter
at the end; a prefill writes each layer's before attending. With `single_row` set (a package exported for batch 1)
the decode step runs every matmul as one ops/gemv.py call with the norms, residuals and SwiGLU fused in. Every shape
decision is tensor arithmetic, so torch.export traces it with symbolic batch, sequence and cache lengths.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..ops.decode_attention import decode_attention
from ..ops.gemv import gemv, linear_operands
from .decoder import DecoderLM, DecoderLayer, RMSNorm
from .rope import cos_sin_tables


class CachedDecoder(nn.Module):
    """forward(token_ids [B, S], past_lengths [B], k_cache, v_cache) -> logits [B, V] (fp32) of each row's last token.

    k_cache, v_cache: [B, L, KV, M, D]. Row b appends S tokens at positions past_lengths[b] .. + S - 1 (all < M).
    """

    single_row = False  # decode through ops/gemv.py (set on the module exported as the batch-1 decode package)

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
        if seq == 1 and self.single_row:
            x = self._decode_layers(x.reshape(-1), cos, sin, past_lengths, k_cache, v_cache)
            head = self.lm_head if hasattr(self, "lm_head") else self.embed_tokens.weight
            return gemv(x, **linear_operands(head), rms_eps=self.norm.eps, norm_weight=self.norm.weight).float()[None]
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
        """Every layer's decode (single_row: decode_row, x [E]), then one write of all new keys and values."""
        new_keys, new_values = [], []
        for index, layer in enumerate(self.layers):
            args = (x, cos, sin, past_lengths, k_cache[:, index], v_cache[:, index])
            x, k, v = layer.decode_row(*args, self.rope_cos, self.rope_sin) if self.single_row else layer.decode(*args)
            new_keys.append(k)
            new_values.append(v)
        _write_step(k_cache, v_cache, past_lengths, new_keys, new_values)
        return x


def _write_step(k_cache, v_cache, past_lengths, new_keys, new_values):
    """Every layer's new key and value [B, KV, D] into the caches at each row's position, in one scatter each."""
    rows = torch.arange(k_cache.shape[0], device=k_cache.device)[:, None]
    position = past_lengths[:, None]
    k_cache[rows, :, :, position] = torch.stack(new_keys, dim=1)[:, None]  # [B, 1, L, KV, D]
    v_cache[rows, :, :, position] = torch.stack(new_values, dim=1)[:, None]


class PackedLayer(nn.Module):
    """A decoder layer with q/k/v as one linear (outputs concatenated in that order) and gate/up as another (rows
    interleaved: gate 0, up 0, gate 1, ...), so that a matmul tile holds both halves of each SwiGLU pair. For the
    same reason each q and k head's dims are reordered into rotary pairs (d, d + D/2) side by side; attention scores
    do not change when q and k share one order, and the cache holds keys in it. The two RMSNorms' weights are folded
    into the columns of the linears they feed (their own weights become ones), so the batch-1 kernels normalise x
    without loading a norm weight."""

    def __init__(self, layer: DecoderLayer):
        super().__init__()
        attn, mlp = layer.self_attn, layer.mlp
        self.cfg = attn.cfg
        self.input_layernorm = unit_norm(layer.input_layernorm)
        self.post_attention_layernorm = unit_norm(layer.post_attention_layernorm)
        qkv = concat_linears(attn.q_proj, attn.k_proj, attn.v_proj)
        self.qkv_proj = fold_norm(layer.input_layernorm, pair_rotary_rows(qkv, self.cfg))
        self.o_proj = attn.o_proj
        if self.cfg.qk_norm:
            self.q_norm, self.k_norm = pair_rotary_norm(attn.q_norm), pair_rotary_norm(attn.k_norm)
        self.gate_up_proj = fold_norm(layer.post_attention_layernorm, interleave_linears(mlp.gate_proj, mlp.up_proj))
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

    def decode_row(self, x, cos, sin, past_lengths, k_cache, v_cache, cos_table, sin_table):
        """decode for batch 1 with x [E]: four gemv calls (norm + q/k/v + rotary, o + residual, norm + gate/up +
        SwiGLU, down + residual) around the attention. The fused rotary reads its row of the tables itself; with
        q/k norms the rotary runs after them, unfused, on cos/sin."""
        cfg, eps = self.cfg, self.input_layernorm.eps
        if cfg.qk_norm:
            qkv = gemv(x, **linear_operands(self.qkv_proj), rms_eps=eps)
            q, k, v = self._heads(qkv.reshape(1, 1, -1), cos, sin)
        else:
            rope = (cos_table, sin_table, past_lengths, cfg.q_size + cfg.kv_size, cfg.head_dim)
            q, k, v = self._split(gemv(x, **linear_operands(self.qkv_proj), rms_eps=eps, rope=rope).reshape(1, 1, -1))
        out = decode_attention(q[:, 0], k[:, 0], v[:, 0], k_cache, v_cache, past_lengths)
        x = gemv(out.reshape(-1), **linear_operands(self.o_proj), residual=x)
        act = gemv(x, **linear_operands(self.gate_up_proj), rms_eps=self.post_attention_layernorm.eps, swiglu=True)
        return gemv(act, **linear_operands(self.down_proj), residual=x), k[:, 0], v[:, 0]

    def _qkv(self, x, cos, sin):
        return self._heads(self.qkv_proj(x), cos, sin)

    def _heads(self, qkv, cos, sin):
        """Projected q/k/v [B, S, q + 2 kv] -> rotated q, k and v per head."""
        q, k, v = self._split(qkv)
        if self.cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        return rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin), v

    def _split(self, qkv):
        cfg, (batch, seq, _) = self.cfg, qkv.shape
        q, k, v = qkv.split([cfg.q_size, cfg.kv_size, cfg.kv_size], dim=-1)
        heads = (cfg.num_heads, cfg.num_kv_heads, cfg.num_kv_heads)
        return tuple(t.reshape(batch, seq, n, cfg.head_dim) for t, n in zip((q, k, v), heads))

    def _rest(self, x, attention):
        """The output projection, residual, and the MLP block."""
        x = x + self.o_proj(attention)
        gate, up = self.gate_up_proj(self.post_attention_layernorm(x)).unflatten(-1, (-1, 2)).unbind(-1)
        return x + self.down_proj(F.silu(gate) * up)


def concat_linears(*linears: nn.Linear) -> nn.Linear:
    weight = torch.cat([linear.weight.data for linear in linears])
    packed = nn.Linear(weight.shape[1], weight.shape[0], bias=linears[0].bias is not None, device="meta")
    packed.weight = nn.Parameter(weight, requires_grad=False)
    if packed.bias is not None:
        packed.bias = nn.Parameter(torch.cat([linear.bias.data for linear in linears]), requires_grad=False)
    return packed


def interleaved_halves(size: int) -> torch.Tensor:
    """0, size/2, 1, size/2 + 1, ...: the two halves of a range side by side (a head's rotary pairs, gate/up rows)."""
    return torch.arange(size).view(2, -1).T.reshape(-1)


def reorder_rows(linear: nn.Linear, order: torch.Tensor) -> nn.Linear:
    linear.weight.data = linear.weight.data[order]
    if linear.bias is not None:
        linear.bias.data = linear.bias.data[order]
    return linear


def pair_rotary_rows(qkv: nn.Linear, cfg) -> nn.Linear:
    """Reorder the q and k heads' output rows of a packed q/k/v linear into rotary pair order (v keeps its own)."""
    rows = cfg.num_heads + cfg.num_kv_heads
    order = (torch.arange(rows)[:, None] * cfg.head_dim + interleaved_halves(cfg.head_dim)).flatten()
    return reorder_rows(qkv, torch.cat([order, torch.arange(rows * cfg.head_dim, qkv.weight.shape[0])]))


def interleave_linears(first: nn.Linear, second: nn.Linear) -> nn.Linear:
    """One linear whose output rows alternate between the two layers' rows (first 0, second 0, first 1, ...)."""
    packed = concat_linears(first, second)
    return reorder_rows(packed, interleaved_halves(packed.weight.shape[0]))


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotary embedding of x [..., H, D] with dims in rotary pair order; cos/sin [..., D/2] without the head
    axis."""
    a, b = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos.unsqueeze(-2), sin.unsqueeze(-2)
    return torch.stack([a * c - b * s, b * c + a * s], dim=-1).flatten(-2)


def fold_norm(norm: RMSNorm, linear: nn.Linear) -> nn.Linear:
    """linear(norm(x)) == linear'(unit_norm(x)): the norm's weight multiplies the linear's columns (in fp32)."""
    weight = linear.weight.data
    linear.weight.data = (weight.float() * norm.weight.data.float()).to(weight.dtype)
    return linear


def norm_like(norm: RMSNorm, weight: torch.Tensor) -> RMSNorm:
    """An RMSNorm with `norm`'s eps and `weight` (a new module: DecoderLM's own stays as it was)."""
    new = RMSNorm(weight.shape[0], norm.eps)
    new.weight = nn.Parameter(weight, requires_grad=False)
    return new


def unit_norm(norm: RMSNorm) -> RMSNorm:
    return norm_like(norm, torch.ones_like(norm.weight.data))


def pair_rotary_norm(norm: RMSNorm) -> RMSNorm:
    return norm_like(norm, norm.weight.data[interleaved_halves(norm.weight.shape[0])])


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

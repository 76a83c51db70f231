"""Emit the decoder as compiler IR in its plain, unfused form (the passes fuse it later)."""
from collections.abc import Callable

import numpy as np

from ..compiler.ir import Graph
from .config import DecoderConfig

EMBED = "model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"


def build_decoder_graph(cfg: DecoderConfig, load_tensor: Callable[[str], np.ndarray], on_layer=None) -> Graph:
    graph = Graph(cfg)
    graph.weights[EMBED] = load_tensor(EMBED)
    graph.add("embed", ["input_ids"], ["h.embed"], weight=EMBED)
    graph.add("positions", ["input_ids", "seqlens_k"], ["position_ids"])
    hidden = "h.embed"
    for layer in range(cfg.num_layers):
        hidden = _decoder_layer(graph, cfg, load_tensor, layer, hidden)
        if on_layer:
            on_layer(layer)
    graph.add("last_token", [hidden], ["h.last"])
    _rms_norm(graph, load_tensor, "h.last", "h.final", "model.norm.weight", cfg.rms_norm_eps)
    graph.weights[LM_HEAD] = graph.weights[EMBED].copy() if cfg.tie_word_embeddings else load_tensor(LM_HEAD)
    graph.add("linear", ["h.final"], ["logits"], weight=LM_HEAD)
    return graph


def _decoder_layer(graph: Graph, cfg: DecoderConfig, load, layer: int, x: str) -> str:
    p, v = f"model.layers.{layer}.", f"l{layer}."
    _rms_norm(graph, load, x, v + "attn_in", p + "input_layernorm.weight", cfg.rms_norm_eps)
    for proj in ("q", "k", "v"):
        _linear(graph, load, v + "attn_in", v + proj, p + f"self_attn.{proj}_proj", cfg.qkv_bias)
    q, k = v + "q", v + "k"
    if cfg.qk_norm:
        q = _head_rms_norm(graph, load, q, p + "self_attn.q_norm.weight", cfg)
        k = _head_rms_norm(graph, load, k, p + "self_attn.k_norm.weight", cfg)
    graph.add("rotary", [q, "position_ids"], [v + "q_rot"], num_heads=cfg.num_heads)
    graph.add("rotary", [k, "position_ids"], [v + "k_rot"], num_heads=cfg.num_kv_heads)
    graph.add("attention", [v + "q_rot", v + "k_rot", v + "v"], [v + "attn"], layer=layer, rotary=False)
    _linear(graph, load, v + "attn", v + "o", p + "self_attn.o_proj", bias=False)
    graph.add("add", [x, v + "o"], [v + "resid"])
    _rms_norm(graph, load, v + "resid", v + "mlp_in", p + "post_attention_layernorm.weight", cfg.rms_norm_eps)
    _linear(graph, load, v + "mlp_in", v + "gate", p + "mlp.gate_proj", bias=False)
    _linear(graph, load, v + "mlp_in", v + "up", p + "mlp.up_proj", bias=False)
    graph.add("silu_mul", [v + "gate", v + "up"], [v + "act"])
    _linear(graph, load, v + "act", v + "down", p + "mlp.down_proj", bias=False)
    graph.add("add", [v + "resid", v + "down"], [v + "out"])
    return v + "out"


def _linear(graph: Graph, load, x: str, out: str, prefix: str, bias: bool) -> None:
    graph.weights[prefix + ".weight"] = load(prefix + ".weight")
    attrs = {"weight": prefix + ".weight"}
    if bias:
        graph.weights[prefix + ".bias"] = load(prefix + ".bias")
        attrs["bias"] = prefix + ".bias"
    graph.add("linear", [x], [out], **attrs)


def _rms_norm(graph: Graph, load, x: str, out: str, weight: str, eps: float) -> None:
    graph.weights[weight] = load(weight)
    graph.add("rms_norm", [x], [out], weight=weight, eps=eps)


def _head_rms_norm(graph: Graph, load, x: str, weight: str, cfg: DecoderConfig) -> str:
    graph.weights[weight] = load(weight)
    graph.add("head_rms_norm", [x], [x + "_norm"], weight=weight, eps=cfg.rms_norm_eps, head_dim=cfg.head_dim)
    return x + "_norm"

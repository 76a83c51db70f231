"""GGUF tensor names to HF names, and undoing llama.cpp's rotary row permutation."""

import re

import numpy as np

from ..checkpoint import CheckpointError

CONFIG_ONLY_TENSORS = {"rope_freqs.weight"}

_TOP_LEVEL = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_PER_LAYER = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GGUF_NAME = re.compile(r"(?:blk\.(?P<layer>\d+)\.)?(?P<module>\w+)\.(?P<kind>weight|bias)")


def hf_tensor_name(gguf_name: str) -> str:
    match = _GGUF_NAME.fullmatch(gguf_name)
    modules = _TOP_LEVEL if match and match["layer"] is None else _PER_LAYER
    if not match or match["module"] not in modules:
        raise CheckpointError(f"unsupported GGUF tensor {gguf_name!r}")
    prefix = "" if match["layer"] is None else f"model.layers.{match['layer']}."
    return f"{prefix}{modules[match['module']]}.{match['kind']}"


def unpermute_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's `w.reshape(n_head, 2, d // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)`."""
    half_head = weight.shape[0] // num_heads // 2
    return weight.reshape(num_heads, half_head, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)

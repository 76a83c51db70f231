"""An HF config.json dict and generation config synthesized from GGUF metadata."""

import math

import numpy as np
from gguf import ReaderTensor

from ..checkpoint import CheckpointError

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def hf_config(metadata: dict, tensors: dict[str, ReaderTensor]) -> dict:
    arch = metadata.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"GGUF architecture {arch!r} is not supported (supported: {', '.join(ARCHITECTURES)})")
    hparams = _ArchParams(metadata, arch)
    num_heads = hparams.require("attention.head_count")
    head_dim = _head_dim(hparams, num_heads)
    rope_theta = _float32(hparams.get("rope.freq_base", 10000.0))
    return {
        "architectures": [ARCHITECTURES[arch]],
        "model_type": arch,
        "hidden_size": hparams.require("embedding_length"),
        "num_hidden_layers": hparams.require("block_count"),
        "num_attention_heads": num_heads,
        "num_key_value_heads": hparams.get("attention.head_count_kv", num_heads),
        "head_dim": head_dim,
        "intermediate_size": hparams.require("feed_forward_length"),
        "vocab_size": _embedding_rows(tensors),
        "hidden_act": "silu",
        "rms_norm_eps": _float32(hparams.require("attention.layer_norm_rms_epsilon")),
        "rope_theta": rope_theta,
        "rope_scaling": _rope_scaling(hparams, tensors, rope_theta, head_dim),
        "max_position_embeddings": hparams.require("context_length"),
        "tie_word_embeddings": "output.weight" not in tensors,
        "attention_bias": "blk.0.attn_q.bias" in tensors,
        "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": metadata.get("tokenizer.ggml.eos_token_id"),
    }


def generation_config(metadata: dict) -> dict:
    """BOS and EOS; llama.cpp's end-of-turn / end-of-message tokens also stop generation."""
    stops = [metadata.get(f"tokenizer.ggml.{kind}_token_id") for kind in ("eos", "eot", "eom")]
    stops = list(dict.fromkeys(token for token in stops if token is not None))
    return {
        "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": stops[0] if len(stops) == 1 else stops or None,
    }


class _ArchParams:
    """Metadata keys under the `{arch}.` prefix."""

    def __init__(self, metadata: dict, arch: str):
        self.metadata = metadata
        self.arch = arch

    def get(self, key: str, default=None):
        return self.metadata.get(f"{self.arch}.{key}", default)

    def require(self, key: str):
        if f"{self.arch}.{key}" not in self.metadata:
            raise CheckpointError(f"GGUF metadata has no {self.arch}.{key}")
        return self.metadata[f"{self.arch}.{key}"]


def _head_dim(hparams: _ArchParams, num_heads: int) -> int:
    explicit = hparams.get("attention.key_length") or hparams.get("rope.dimension_count")
    return explicit or hparams.require("embedding_length") // num_heads


def _embedding_rows(tensors: dict[str, ReaderTensor]) -> int:
    if "token_embd.weight" not in tensors:
        raise CheckpointError("GGUF has no token_embd.weight tensor")
    return int(tensors["token_embd.weight"].shape[-1])  # GGUF lists dims innermost first: [hidden, vocab]


def _float32(value: float) -> float:
    """The shortest decimal that rounds to the same float32 (1e-05, not 9.999999747378752e-06)."""
    return float(str(np.float32(value)))


def _rope_scaling(hparams: _ArchParams, tensors: dict[str, ReaderTensor], theta: float, head_dim: int) -> dict | None:
    if "rope_freqs.weight" in tensors:
        return _llama3_rope_scaling(np.asarray(tensors["rope_freqs.weight"].data, np.float32), theta, head_dim)
    kind = hparams.get("rope.scaling.type")
    if kind in (None, "none"):
        return None
    scaling = {"rope_type": kind, "factor": _float32(hparams.require("rope.scaling.factor"))}
    if (original := hparams.get("rope.scaling.original_context_length")) is not None:
        scaling["original_max_position_embeddings"] = original
    return scaling


def _llama3_rope_scaling(factors: np.ndarray, theta: float, head_dim: int) -> dict:
    """llama.cpp stores Llama 3.x rope scaling as per-frequency factors; recover HF's parameters."""
    scaling = {"rope_type": "llama3", "factor": _float32(factors.max()), **_LLAMA3_ROPE}
    if not np.allclose(_llama3_factors(scaling, theta, head_dim), factors, rtol=1e-4):
        raise CheckpointError(f"rope_freqs.weight does not match Llama 3 rope scaling with {_LLAMA3_ROPE}")
    return scaling


def _llama3_factors(scaling: dict, theta: float, head_dim: int) -> np.ndarray:
    wavelengths = 2 * math.pi * theta ** (np.arange(0, head_dim, 2) / head_dim)
    context = scaling["original_max_position_embeddings"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    smooth = np.clip((context / wavelengths - low) / (high - low), 0.0, 1.0)
    return 1 / ((1 - smooth) / scaling["factor"] + smooth)

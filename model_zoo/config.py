"""DecoderConfig: the one parametrised Llama-family decoder, configured from config.json."""
import logging
from dataclasses import asdict, dataclass

logger = logging.getLogger("mistralrs.model_zoo")


class UnsupportedArchitecture(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class FamilyTraits:
    """How one HF architecture deviates from plain Llama."""

    qkv_bias: bool = False
    qk_norm: bool = False


FAMILIES: dict[str, FamilyTraits] = {
    "LlamaForCausalLM": FamilyTraits(),
    "MistralForCausalLM": FamilyTraits(),
    "Qwen2ForCausalLM": FamilyTraits(qkv_bias=True),
    "Qwen3ForCausalLM": FamilyTraits(qk_norm=True),
}


@dataclass(frozen=True, slots=True)
class DecoderConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool
    qk_norm: bool

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DecoderConfig":
        return cls(**values)

    @classmethod
    def from_hf(cls, hf: dict) -> "DecoderConfig":
        architecture = _architecture(hf)
        traits = FAMILIES[architecture]
        num_heads = hf["num_attention_heads"]
        head_dim = hf.get("head_dim") or hf["hidden_size"] // num_heads
        return cls(
            architecture=architecture,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=hf.get("num_key_value_heads") or num_heads,
            head_dim=head_dim,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=float(_rope_parameters(hf).get("rope_theta", hf.get("rope_theta", 10000.0))),
            rope_scaling=_rope_scaling(hf),
            max_position_embeddings=_max_positions(hf),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=traits.qkv_bias or bool(hf.get("attention_bias", False)),
            qk_norm=traits.qk_norm,
        )


def _architecture(hf: dict) -> str:
    names = hf.get("architectures") or []
    for name in names:
        if name in FAMILIES:
            return name
    raise UnsupportedArchitecture(
        f"unsupported architecture {names or hf.get('model_type')!r}; "
        f"supported: {', '.join(sorted(FAMILIES))}"
    )


def _rope_parameters(hf: dict) -> dict:
    """transformers 5 moved rope_theta/rope_scaling into `rope_parameters`."""
    return hf.get("rope_parameters") or {}


def _rope_scaling(hf: dict) -> dict | None:
    scaling = hf.get("rope_scaling") or _rope_parameters(hf)
    kind = scaling.get("rope_type") or scaling.get("type") if scaling else None
    if kind in (None, "default"):
        return None
    if kind not in ("llama3", "linear"):
        raise UnsupportedArchitecture(f"unsupported rope scaling {kind!r}; supported: default, linear, llama3")
    return {k: v for k, v in scaling.items() if k != "rope_theta"} | {"rope_type": kind}


def _max_positions(hf: dict) -> int:
    limit = hf.get("max_position_embeddings", 4096)
    window = hf.get("sliding_window")
    if window and hf.get("use_sliding_window", True) and window < limit:
        logger.info("max context limited to the sliding window of %d tokens", window)
        return window
    return limit

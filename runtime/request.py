"""What a client asks the engine for: one generation request and its sampling / stopping rules."""
from dataclasses import dataclass, field


@dataclass(slots=True)
class SamplingParams:
    """Sampling knobs; None means "take the model's generation_config, then the spec's default"."""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(slots=True)
class StoppingCriteria:
    max_tokens: int | None = None
    stop_strings: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False


@dataclass(slots=True)
class GenerationRequest:
    """A tokenized prompt and what to do with it; `n` independent choices share the prompt."""

    prompt_token_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stopping: StoppingCriteria = field(default_factory=StoppingCriteria)
    n: int = 1

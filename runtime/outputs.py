"""What the engine sends back for a request, event by event."""
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenLogprob:
    """One sampled token (natural-log probability) with its top alternatives."""

    token_id: int
    token: str
    logprob: float
    bytes: list[int]
    top: list["TokenLogprob"] = field(default_factory=list)


@dataclass(slots=True)
class ChoiceDelta:
    """New output of one choice: text is already detokenized and cut at stop strings."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length" | "canceled"


@dataclass(slots=True)
class RequestUsage:
    prompt_tokens: int
    completion_tokens: int
    prompt_time_s: float
    completion_time_s: float

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class RequestDone:
    """Last event of a request: every choice has finished."""

    usage: RequestUsage


@dataclass(slots=True)
class RequestError:
    """The request failed after it was accepted; no further events follow."""

    message: str


Event = ChoiceDelta | RequestDone | RequestError

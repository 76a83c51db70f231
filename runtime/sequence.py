"""Sequence: the plain state of one generated choice (no tensors here)."""
from dataclasses import dataclass, field
from enum import Enum


class SequenceStatus(Enum):
    WAITING = "waiting"
    PREFILLING = "prefilling"
    DECODING = "decoding"
    FINISHED = "finished"


@dataclass(slots=True, eq=False)
class Sequence:
    seq_id: int
    request_id: str
    choice_index: int
    token_ids: list[int]
    num_prompt_tokens: int
    max_total_tokens: int  # prompt + generated may not exceed this (context / max_tokens)
    status: SequenceStatus = SequenceStatus.WAITING
    slot: int | None = None
    num_cached_tokens: int = 0
    finish_reason: str | None = None
    state: dict = field(default_factory=dict)  # engine-side: sampler, detokenizer, stop matcher

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def num_uncached(self) -> int:
        return len(self.token_ids) - self.num_cached_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

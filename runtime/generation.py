"""Per-sequence generation state: sampler, detokenizer, stop rules; turns a sampled token into a delta."""
from dataclasses import dataclass, replace

from .outputs import ChoiceDelta, TokenLogprob
from .request import GenerationRequest
from .sampler import SampledToken, SequenceSampler
from .sequence import Sequence
from .stop_strings import StopStringMatcher
from .tokenizer import Tokenizer


@dataclass(slots=True)
class GenerationState:
    sampler: SequenceSampler
    detokenizer: object
    stops: StopStringMatcher
    stop_token_ids: frozenset[int]
    max_new_tokens: int | None

    @classmethod
    def create(cls, request: GenerationRequest, choice: int, tokenizer: Tokenizer, defaults: dict) -> "GenerationState":
        sampling = request.sampling
        if sampling.seed is not None:
            sampling = replace(sampling, seed=sampling.seed + choice)
        stop_ids = set(request.stopping.stop_token_ids)
        if not request.stopping.ignore_eos:
            stop_ids |= tokenizer.eos_token_ids
        return cls(
            sampler=SequenceSampler(sampling, defaults, request.prompt_token_ids),
            detokenizer=tokenizer.new_detokenizer(),
            stops=StopStringMatcher(request.stopping.stop_strings),
            stop_token_ids=frozenset(stop_ids),
            max_new_tokens=request.stopping.max_tokens,
        )


def advance(seq: Sequence, sampled: SampledToken, tokenizer: Tokenizer) -> ChoiceDelta:
    """Append the sampled token to `seq`; return the delta to emit (finish_reason set when it ends)."""
    state: GenerationState = seq.state["generation"]
    token = sampled.token_id
    seq.token_ids.append(token)
    state.sampler.observe(token)
    finish = "stop" if token in state.stop_token_ids else None
    text, stopped = state.stops.feed("" if finish else state.detokenizer.push(token))
    if stopped:
        finish = "stop"
    elif finish is None and _reached_length(seq, state):
        finish = "length"
    if finish and not stopped:
        tail, stopped = state.stops.feed(state.detokenizer.flush())
        text += tail + ("" if stopped else state.stops.flush())
    return ChoiceDelta(seq.choice_index, text, [token], _logprobs(sampled, tokenizer), finish)


def _reached_length(seq: Sequence, state: GenerationState) -> bool:
    if state.max_new_tokens is not None and seq.num_generated >= state.max_new_tokens:
        return True
    return seq.num_tokens >= seq.max_total_tokens


def _logprobs(sampled: SampledToken, tokenizer: Tokenizer) -> list[TokenLogprob]:
    if sampled.logprob is None:
        return []
    top = [_token_logprob(tokenizer, t, lp) for t, lp in sampled.top_logprobs]
    return [_token_logprob(tokenizer, sampled.token_id, sampled.logprob, top)]


def _token_logprob(tokenizer: Tokenizer, token_id: int, logprob: float, top=()) -> TokenLogprob:
    return TokenLogprob(token_id, tokenizer.token_text(token_id), logprob, list(tokenizer.token_bytes(token_id)), list(top))

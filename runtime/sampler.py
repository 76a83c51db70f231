"""Next-token choice from logits, in numpy (spec §12).

Order per row: frequency/presence penalties (generated tokens) -> repetition penalty
(prompt + generated, HF style) -> logit_bias -> greedy argmax when temperature < 1e-7,
else ÷ temperature -> softmax -> top-k -> top-p -> min-p -> draw with the sequence's RNG.

Logprobs are the natural-log log-softmax of the logits after penalties and bias but before
temperature, so they describe the model's (penalized) distribution whatever the temperature.
"""
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .request import SamplingParams

GREEDY_TEMPERATURE = 1e-7
SUPPRESS_TOKEN_BIAS = -1e9
_NUCLEUS_PREFIX = 1024  # top-p is tried on the best 1024 tokens before sorting the whole vocabulary


@dataclass(slots=True)
class SampledToken:
    token_id: int
    logprob: float | None = None  # natural log; None unless the sequence asked for logprobs
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)


def _model_defaults(generation_defaults: dict) -> dict:
    """generation_config -> request-field defaults, as mistral.rs's apply_model_defaults."""
    if generation_defaults.get("do_sample") is False:
        defaults = {"temperature": 0.0, "top_k": 1}
    else:
        names = ("temperature", "top_k", "top_p", "min_p")
        defaults = {k: generation_defaults[k] for k in names if generation_defaults.get(k) is not None}
    defaults["repetition_penalty"] = generation_defaults.get("repetition_penalty")
    defaults["logit_bias"] = dict.fromkeys(generation_defaults.get("suppress_tokens") or (), SUPPRESS_TOKEN_BIAS)
    return defaults


def _first_set(*values):
    return next(v for v in values if v is not None)


class SequenceSampler:
    """One sequence's resolved sampling parameters, RNG and penalty state."""

    def __init__(self, params: SamplingParams, generation_defaults: dict | None = None,
                 prompt_ids: Iterable[int] = ()):
        defaults = _model_defaults(generation_defaults or {})
        temperature = _first_set(params.temperature, defaults.get("temperature"), 1.0)
        self.temperature = float(temperature) if temperature >= GREEDY_TEMPERATURE else None
        top_k = _first_set(params.top_k, defaults.get("top_k"), -1)
        self.top_k = int(top_k) if top_k > 0 else None
        top_p = _first_set(params.top_p, defaults.get("top_p"), 1.0)
        self.top_p = float(top_p) if 0.0 < top_p < 1.0 else None
        min_p = _first_set(params.min_p, defaults.get("min_p"), 0.0)
        self.min_p = float(min_p) if 0.0 < min_p < 1.0 else None
        self.frequency_penalty = float(params.frequency_penalty or 0.0)
        self.presence_penalty = float(params.presence_penalty or 0.0)
        repetition_penalty = _first_set(params.repetition_penalty, defaults["repetition_penalty"], 1.0)
        self.repetition_penalty = float(repetition_penalty) if repetition_penalty != 1.0 else None
        bias = {**defaults["logit_bias"], **params.logit_bias}
        self._bias_ids = np.fromiter(bias.keys(), np.int64, len(bias))
        self._bias_values = np.fromiter(bias.values(), np.float32, len(bias))
        self.wants_logprobs = params.logprobs
        self.num_top_logprobs = params.top_logprobs if params.logprobs else 0
        self.rng = np.random.default_rng(params.seed)
        self._counts: dict[int, int] = {}
        self._seen = set(prompt_ids) if self.repetition_penalty else set()
        self._seen_ids: np.ndarray | None = None
        self._scratch: np.ndarray | None = None
        self.is_plain_greedy = self.temperature is None and not self._has_logit_processing() and not params.logprobs

    def _has_logit_processing(self) -> bool:
        has_penalty = self.frequency_penalty != 0.0 or self.presence_penalty != 0.0
        return has_penalty or self.repetition_penalty is not None or self._bias_ids.size > 0

    def observe(self, token_id: int) -> None:
        """Record the token this sequence just generated (feeds the penalties)."""
        if self.frequency_penalty != 0.0 or self.presence_penalty != 0.0:
            self._counts[token_id] = self._counts.get(token_id, 0) + 1
        if self.repetition_penalty is not None and token_id not in self._seen:
            self._seen.add(token_id)
            self._seen_ids = None

    def sample(self, row: np.ndarray) -> SampledToken:
        """Choose from one [V] logits row; the row is modified in place."""
        self._process_logits(row)
        log_norm = self._log_normalizer(row) if self.wants_logprobs else None
        token = int(np.argmax(row)) if self.temperature is None else self._draw(row)
        if log_norm is None:
            return SampledToken(token)
        return SampledToken(token, float(row[token] - log_norm), _top_logprobs(row, self.num_top_logprobs, log_norm))

    def _process_logits(self, row: np.ndarray) -> None:
        if self._counts:
            ids = np.fromiter(self._counts.keys(), np.int64, len(self._counts))
            counts = np.fromiter(self._counts.values(), np.float32, len(self._counts))
            row[ids] -= counts * self.frequency_penalty + self.presence_penalty
        if self._seen:
            ids = self._seen_array(row.size)
            seen = row[ids]
            row[ids] = np.where(seen > 0, seen / self.repetition_penalty, seen * self.repetition_penalty)
        if self._bias_ids.size:
            valid = (self._bias_ids >= 0) & (self._bias_ids < row.size)
            row[self._bias_ids[valid]] += self._bias_values[valid]

    def _seen_array(self, vocab_size: int) -> np.ndarray:
        if self._seen_ids is None:
            ids = np.fromiter(self._seen, np.int64, len(self._seen))
            self._seen_ids = ids[(ids >= 0) & (ids < vocab_size)]
        return self._seen_ids

    def _scratch_like(self, row: np.ndarray) -> np.ndarray:
        if self._scratch is None or self._scratch.size != row.size:
            self._scratch = np.empty(row.size, np.float32)
        return self._scratch

    def _log_normalizer(self, row: np.ndarray) -> float:
        """log(sum(exp(row))), computed stably."""
        scratch = self._scratch_like(row)
        peak = float(row.max())
        np.subtract(row, peak, out=scratch)
        np.exp(scratch, out=scratch)
        return peak + float(np.log(scratch.sum(dtype=np.float64)))

    def _draw(self, row: np.ndarray) -> int:
        # weights: softmax(row / T) up to a constant factor, with the largest weight exactly 1
        weights = self._scratch_like(row)
        np.multiply(row, 1.0 / self.temperature, out=weights)
        weights -= weights.max()
        np.exp(weights, out=weights)
        candidates = None
        if self.top_k is not None and self.top_k < weights.size:
            candidates = _top_k(weights, self.top_k)
        if self.top_p is not None:
            candidates = _nucleus(weights, candidates, self.top_p)
        if self.min_p is not None:
            candidates = _above_min_p(weights, candidates, self.min_p)
        return _weighted_choice(weights, candidates, self.rng)


def _top_k(weights: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest weights, largest first."""
    best = np.argpartition(weights, weights.size - k)[weights.size - k:]
    return best[np.argsort(-weights[best], kind="stable")]


def _nucleus(weights: np.ndarray, candidates: np.ndarray | None, top_p: float) -> np.ndarray:
    """Keep the best tokens until their mass reaches top_p of the candidates' mass (the crossing one stays)."""
    cutoff = top_p * (weights if candidates is None else weights[candidates]).sum(dtype=np.float64)
    if candidates is None:
        candidates = _top_k(weights, min(_NUCLEUS_PREFIX, weights.size))
        if weights[candidates].sum(dtype=np.float64) < cutoff:
            candidates = np.argsort(-weights, kind="stable")
    kept = weights[candidates]
    mass_before = np.cumsum(kept, dtype=np.float64) - kept
    return candidates[:np.count_nonzero(mass_before < cutoff)]


def _above_min_p(weights: np.ndarray, candidates: np.ndarray | None, min_p: float) -> np.ndarray:
    """Drop tokens with p <= min_p * p_max (the largest weight is 1)."""
    if candidates is None:
        return np.flatnonzero(weights > min_p)
    return candidates[weights[candidates] > min_p]


def _weighted_choice(weights: np.ndarray, candidates: np.ndarray | None, rng: np.random.Generator) -> int:
    kept = weights if candidates is None else weights[candidates]
    cumulative = np.cumsum(kept, dtype=np.float64)
    i = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), kept.size - 1)
    return i if candidates is None else int(candidates[i])


def _top_logprobs(row: np.ndarray, n: int, log_norm: float) -> list[tuple[int, float]]:
    n = min(n, row.size)
    if n <= 0:
        return []
    best = _top_k(row, n)
    return [(int(t), float(row[t] - log_norm)) for t in best]


def sample_batch(logits: np.ndarray, states: Sequence[SequenceSampler]) -> list[SampledToken]:
    """One token per row of logits [B, V] (float32, modified in place); states[i] owns row i."""
    if logits.ndim != 2 or logits.shape[0] != len(states):
        raise ValueError(f"logits {logits.shape} do not match {len(states)} sequences")
    plain = [state.is_plain_greedy for state in states]
    argmax = np.argmax(logits, axis=1).tolist() if any(plain) else None
    if all(plain):
        return [SampledToken(token) for token in argmax]
    if not logits.flags.writeable:
        logits = logits.copy()
    return [SampledToken(argmax[i]) if plain[i] else state.sample(logits[i]) for i, state in enumerate(states)]

import numpy as np
import pytest

from mistralrs.runtime.request import SamplingParams
from mistralrs.runtime.sampler import SampledToken, SequenceSampler, sample_batch

PROBS = np.array([0.5, 0.3, 0.15, 0.05])


def _logits(probs=PROBS) -> np.ndarray:
    return np.log(np.asarray(probs, np.float32))


def _draws(params: SamplingParams, row: np.ndarray, n: int = 3000) -> np.ndarray:
    state = SequenceSampler(params)
    return np.array([state.sample(row.copy()).token_id for _ in range(n)])


def _log_softmax(x):
    x = x.astype(np.float64)
    return x - x.max() - np.log(np.exp(x - x.max()).sum())


def test_greedy_fast_path_is_batch_argmax():
    logits = np.random.default_rng(0).standard_normal((5, 1000)).astype(np.float32)
    states = [SequenceSampler(SamplingParams(temperature=0.0)) for _ in range(5)]
    assert all(s.is_plain_greedy for s in states)
    assert sample_batch(logits, states) == [SampledToken(int(t)) for t in logits.argmax(axis=1)]


def test_temperature_resolution():
    assert SequenceSampler(SamplingParams()).temperature == 1.0
    assert SequenceSampler(SamplingParams(temperature=1e-8)).temperature is None
    defaults = {"temperature": 0.6, "top_k": 20, "top_p": 0.95, "min_p": 0.0, "repetition_penalty": 1.1}
    state = SequenceSampler(SamplingParams(), defaults)
    assert (state.temperature, state.top_k, state.top_p, state.min_p, state.repetition_penalty) == (
        0.6, 20, 0.95, None, 1.1)
    state = SequenceSampler(SamplingParams(temperature=0.9, top_k=0, top_p=1.0), defaults)
    assert (state.temperature, state.top_k, state.top_p) == (0.9, None, None)
    assert SequenceSampler(SamplingParams(), {"top_k": 0}).top_k is None


def test_do_sample_false_means_greedy():
    defaults = {"do_sample": False, "temperature": 0.6, "top_p": 0.9}
    state = SequenceSampler(SamplingParams(), defaults)
    assert state.temperature is None and state.is_plain_greedy
    assert SequenceSampler(SamplingParams(temperature=0.7), defaults).top_k == 1


def test_seed_reproducible():
    rows = np.random.default_rng(1).standard_normal((40, 500)).astype(np.float32)

    def run(seed):
        state = SequenceSampler(SamplingParams(temperature=1.5, top_p=0.9, seed=seed))
        return [sample_batch(row[None].copy(), [state])[0].token_id for row in rows]

    assert run(1234) == run(1234)
    assert run(1234) != run(4321)


def test_top_k_one_is_greedy():
    logits = np.random.default_rng(2).standard_normal((3, 800)).astype(np.float32)
    states = [SequenceSampler(SamplingParams(temperature=1.0, top_k=1)) for _ in range(3)]
    assert [t.token_id for t in sample_batch(logits.copy(), states)] == logits.argmax(axis=1).tolist()


def test_frequency_and_presence_penalties_use_generated_tokens_only():
    state = SequenceSampler(SamplingParams(temperature=0, frequency_penalty=0.5, presence_penalty=0.25), None, [9])
    for token in (5, 5, 7):
        state.observe(token)
    row = np.zeros(10, np.float32)
    state.sample(row)
    expected = np.zeros(10, np.float32)
    expected[5], expected[7] = -1.25, -0.75
    np.testing.assert_allclose(row, expected)


def test_repetition_penalty_hf_style_over_prompt_and_generated():
    state = SequenceSampler(SamplingParams(temperature=0, repetition_penalty=2.0), None, [1, 2])
    state.observe(3)
    row = np.array([4.0, 4.0, -4.0, 1.0, 1.0], np.float32)
    state.sample(row)
    np.testing.assert_allclose(row, [4.0, 2.0, -8.0, 0.5, 1.0])


def test_logit_bias_added_and_suppress_tokens():
    state = SequenceSampler(SamplingParams(temperature=0, logit_bias={3: 5.0, 99: 1.0}), {"suppress_tokens": [0]})
    assert not state.is_plain_greedy
    row = np.array([10.0, 1.0, 2.0, 0.0], np.float32)
    [token] = sample_batch(row[None], [state])
    assert token.token_id == 3
    np.testing.assert_allclose(row, [10.0 - 1e9, 1.0, 2.0, 5.0])


def test_request_bias_wins_over_suppress_tokens():
    state = SequenceSampler(SamplingParams(temperature=0, logit_bias={0: 1.0}), {"suppress_tokens": [0]})
    row = np.zeros(2, np.float32)
    state.sample(row)
    np.testing.assert_allclose(row, [1.0, 0.0])


def test_unfiltered_sampling_follows_the_distribution():
    counts = np.bincount(_draws(SamplingParams(seed=0), _logits(), 8000), minlength=4) / 8000
    np.testing.assert_allclose(counts, PROBS, atol=0.02)


@pytest.mark.parametrize("params, kept", [
    (SamplingParams(top_k=2), {0, 1}),
    (SamplingParams(top_p=0.7), {0, 1}),  # 0.5 < 0.7, so the token crossing 0.7 stays
    (SamplingParams(top_p=0.85), {0, 1, 2}),
    (SamplingParams(min_p=0.25), {0, 1, 2}),  # drops p <= 0.125
    (SamplingParams(min_p=0.7), {0}),
    (SamplingParams(top_k=3, top_p=0.6), {0, 1}),  # top-p mass is measured within the top-k set
    (SamplingParams(top_p=0.9, min_p=0.5), {0, 1}),
])
def test_filters_on_hand_made_distribution(params, kept):
    params.seed = 7
    assert set(_draws(params, _logits()).tolist()) == kept


def test_temperature_sharpens():
    cold = _draws(SamplingParams(temperature=0.2, seed=3), _logits())
    assert np.mean(cold == 0) > 0.9


@pytest.mark.parametrize("top_p", [0.3, 0.95])  # the nucleus fits in the first 1024 tokens, or needs a full sort
def test_top_p_large_vocabulary(top_p):
    logits = np.random.default_rng(4).standard_normal(50_000).astype(np.float32) * 2
    probs = np.exp(_log_softmax(logits))
    order = np.argsort(-probs)
    mass_before = np.cumsum(probs[order]) - probs[order]
    nucleus = set(order[mass_before < top_p].tolist())
    assert (len(nucleus) > 1024) == (top_p == 0.95)
    drawn = _draws(SamplingParams(top_p=top_p, seed=5), logits, 300)
    assert set(drawn.tolist()) <= nucleus


def test_logprobs_are_log_softmax_before_temperature():
    logits = np.random.default_rng(6).standard_normal(300).astype(np.float32)
    state = SequenceSampler(SamplingParams(temperature=0.5, seed=1, logprobs=True, top_logprobs=3))
    token = state.sample(logits.copy())
    reference = _log_softmax(logits)
    assert token.logprob == pytest.approx(reference[token.token_id], abs=1e-5)
    top = np.argsort(-reference)[:3]
    assert [t for t, _ in token.top_logprobs] == top.tolist()
    np.testing.assert_allclose([lp for _, lp in token.top_logprobs], reference[top], atol=1e-5)


def test_greedy_logprobs_after_penalties():
    state = SequenceSampler(SamplingParams(temperature=0, logprobs=True, top_logprobs=0, logit_bias={1: 2.0}))
    logits = np.array([1.0, 0.0, -1.0], np.float32)
    [token] = sample_batch(logits[None].copy(), [state])
    assert token.token_id == 1 and token.top_logprobs == []
    assert token.logprob == pytest.approx(_log_softmax(np.array([1.0, 2.0, -1.0]))[1], abs=1e-6)


def test_mixed_batch():
    logits = np.random.default_rng(8).standard_normal((3, 200)).astype(np.float32)
    states = [
        SequenceSampler(SamplingParams(temperature=0)),
        SequenceSampler(SamplingParams(temperature=0.8, seed=2)),
        SequenceSampler(SamplingParams(temperature=0, logprobs=True, top_logprobs=2)),
    ]
    out = sample_batch(logits.copy(), states)
    assert out[0].token_id == logits[0].argmax() and out[0].logprob is None
    assert out[2].token_id == logits[2].argmax() and len(out[2].top_logprobs) == 2
    with pytest.raises(ValueError):
        sample_batch(logits, states[:2])


def test_read_only_logits_are_not_written():
    logits = np.zeros((1, 4), np.float32)
    logits.flags.writeable = False
    state = SequenceSampler(SamplingParams(temperature=0, logit_bias={2: 1.0}))
    assert sample_batch(logits, [state])[0].token_id == 2

"""Engine behaviour that HTTP tests cannot reach: a failing forward, a full queue, cancellation, shared prefixes."""
import time
from dataclasses import replace

import pytest

from mistralrs.runtime.artifact import open_artifact
from mistralrs.runtime.engine import Engine, EngineConfig
from mistralrs.runtime.errors import EngineOverloaded, InvalidRequest
from mistralrs.runtime.outputs import ChoiceDelta, RequestDone, RequestError
from mistralrs.runtime.request import GenerationRequest, SamplingParams, StoppingCriteria


@pytest.fixture(scope="module")
def engine(smollm2_artifact):
    engine = Engine(open_artifact(smollm2_artifact("Q4K")), EngineConfig(max_batch=2, max_waiting=2, threads=2))
    yield engine
    engine.shutdown()


def request(engine, max_tokens: int = 8) -> GenerationRequest:
    ids = engine.tokenizer.encode("The capital of France is", add_special_tokens=False)
    return GenerationRequest(ids, SamplingParams(temperature=0), StoppingCriteria(max_tokens=max_tokens, ignore_eos=True))


def events(handle) -> list:
    return list(handle)


def choice_tokens(handle) -> dict[int, list[int]]:
    tokens: dict[int, list[int]] = {}
    for event in handle:
        if isinstance(event, ChoiceDelta):
            tokens.setdefault(event.index, []).extend(event.token_ids)
    return tokens


def test_a_failing_forward_fails_its_requests_and_the_engine_carries_on(engine):
    real_forward = engine.executor.forward

    def broken(*args):
        raise RuntimeError("kernel exploded")

    engine.executor.forward = broken
    try:
        failed = events(engine.submit(request(engine)))
    finally:
        engine.executor.forward = real_forward
    assert isinstance(failed[-1], RequestError) and "kernel exploded" in failed[-1].message
    served = events(engine.submit(request(engine)))
    assert isinstance(served[-1], RequestDone) and served[-1].usage.completion_tokens == 8
    assert engine.stats()["running"] == 0


def test_a_full_queue_is_refused_at_submit(engine):
    handles = []
    with pytest.raises(EngineOverloaded):
        for _ in range(10):
            handles.append(engine.submit(request(engine, max_tokens=64)))
    for handle in handles:
        handle.cancel()
    for handle in handles:
        assert isinstance(events(handle)[-1], RequestDone)
    assert engine.stats()["running"] == 0 and engine.stats()["waiting"] == 0


def test_cancel_ends_the_request_with_finish_reason_canceled(engine):
    handle = engine.submit(request(engine, max_tokens=500))
    assert isinstance(handle.next_event(30), ChoiceDelta)
    handle.cancel()
    deltas = [e for e in events(handle) if isinstance(e, ChoiceDelta)]
    assert deltas[-1].finish_reason == "canceled"


def test_invalid_requests_are_refused_at_submit(engine):
    with pytest.raises(InvalidRequest):
        engine.submit(GenerationRequest([], SamplingParams()))
    with pytest.raises(InvalidRequest):
        engine.submit(GenerationRequest([1] * (engine.max_context + 1), SamplingParams()))


def test_choices_of_one_prompt_share_its_cache_and_give_the_solo_answer(engine):
    solo = choice_tokens(engine.submit(request(engine, max_tokens=12)))[0]
    before = engine.stats().get("prefix_shared_sequences", 0)
    twins = replace(request(engine, max_tokens=12), n=2)
    choices = choice_tokens(engine.submit(twins))
    assert engine.stats()["prefix_shared_sequences"] > before  # at least the second choice copied the first's
    assert choices == {0: solo, 1: solo}


def test_the_next_turn_reuses_the_finished_turn_and_answers_as_a_full_prefill_would(engine, smollm2_artifact):
    first = request(engine, max_tokens=6)
    reply = choice_tokens(engine.submit(first))[0]
    before = engine.stats()["prefix_shared_tokens"]
    follow_up = engine.tokenizer.encode(" And of Italy?", add_special_tokens=False)
    next_turn = replace(first, prompt_token_ids=first.prompt_token_ids + reply + follow_up)
    answer = choice_tokens(engine.submit(next_turn))[0]
    assert engine.stats()["prefix_shared_tokens"] - before == len(first.prompt_token_ids) + len(reply) - 1
    unshared = Engine(open_artifact(smollm2_artifact("Q4K")), EngineConfig(max_batch=2, threads=2, prefix_sharing=False))
    try:
        assert choice_tokens(unshared.submit(next_turn))[0] == answer
    finally:
        unshared.shutdown()


def test_an_idle_engine_faults_its_kv_cache_in_and_answers_as_before(engine):
    before = choice_tokens(engine.submit(request(engine)))
    populator = engine.executor.populator
    deadline = time.monotonic() + 10  # 2 slots x 60 tensors, one per idle turn of the loop
    while not populator.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert populator.done
    assert choice_tokens(engine.submit(request(engine))) == before


def test_with_native_decode_a_shared_prompt_takes_its_first_token_from_the_graph(smollm2_artifact):
    """Native decode steps round activations to int8. Choices that share a cached prompt join a decode step for its
    last position, which the graph computes as it does for a prefill: each choice starts as the solo answer does."""
    engine = Engine(open_artifact(smollm2_artifact("Q4K", decode="native")), EngineConfig(max_batch=4, threads=2))
    prompt_ends, real = [], engine.executor.forward_prompt_end
    engine.executor.forward_prompt_end = lambda *args: prompt_ends.append(len(args[1])) or real(*args)
    try:
        solo = choice_tokens(engine.submit(request(engine, max_tokens=1)))[0]
        choices = choice_tokens(engine.submit(replace(request(engine, max_tokens=1), n=3)))
    finally:
        engine.shutdown()
    assert engine.tokenizer.decode(solo) == " Paris"
    assert choices == {0: solo, 1: solo, 2: solo}
    assert prompt_ends == [3]  # all three found the solo prompt retained and joined one decode step

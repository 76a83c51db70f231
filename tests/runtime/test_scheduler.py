"""Scheduler: dense KV slots, chunked prefill interleaved with decode, slot moves when a sequence leaves, prefixes
shared between sequences."""
from mistralrs.runtime.scheduler import Scheduler, SlotMove
from mistralrs.runtime.sequence import Sequence, SequenceStatus


def seq(seq_id: int, prompt_len: int, prompt: list[int] | None = None) -> Sequence:
    """A sequence whose prompt shares nothing with other seq_ids' unless `prompt` is given."""
    prompt = prompt if prompt is not None else [1000 * seq_id + i for i in range(prompt_len)]
    return Sequence(seq_id, f"r{seq_id}", 0, list(prompt), len(prompt), max_total_tokens=1000)


def run_prefill(scheduler: Scheduler) -> Sequence:
    """Schedule until the current prompt is fully cached; returns that sequence (now decoding)."""
    while True:
        plan = scheduler.schedule()
        scheduler.prefill_done(plan.prefill)
        if plan.prefill.is_last:
            plan.prefill.seq.token_ids.append(7)  # the token sampled from the prefill logits
            return plan.prefill.seq


def assert_dense(scheduler: Scheduler) -> None:
    assert [s.slot for s in scheduler.decoding] == list(range(len(scheduler.decoding)))
    if scheduler.prefilling:
        assert scheduler.prefilling.slot == len(scheduler.decoding)


def test_long_prompts_are_prefilled_in_chunks_alongside_decode():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=4)
    first = seq(0, 3)
    scheduler.add(first)
    run_prefill(scheduler)
    scheduler.add(seq(1, 10))
    chunks = []
    for _ in range(3):
        plan = scheduler.schedule()
        assert plan.decode == [first]  # the running stream decodes every step
        chunks.append(len(plan.prefill.token_ids))
        scheduler.prefill_done(plan.prefill)
    assert chunks == [4, 4, 2]
    assert [s.seq_id for s in scheduler.decoding] == [0, 1]
    assert_dense(scheduler)


def test_a_finished_sequence_frees_its_slot_and_keeps_slots_dense():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=16)
    seqs = [seq(i, 5 + i) for i in range(3)]
    for s in seqs:
        scheduler.add(s)
        run_prefill(scheduler)
    scheduler.add(seq(9, 40))
    plan = scheduler.schedule()
    scheduler.prefill_done(plan.prefill)  # seq 9 is half prefilled in slot 3
    moves = scheduler.finish(seqs[0], "stop")
    assert moves == [SlotMove(src=2, dst=0, length=seqs[2].num_cached_tokens), SlotMove(src=3, dst=2, length=16)]
    assert seqs[0].status is SequenceStatus.FINISHED and seqs[0].slot is None
    assert_dense(scheduler)


def test_admission_stops_at_max_slots_and_requeue_resets_the_cache():
    scheduler = Scheduler(max_slots=2, max_waiting=1, prefill_chunk=64)
    for i in range(2):
        scheduler.add(seq(i, 4))
        run_prefill(scheduler)
    scheduler.add(seq(2, 4))
    assert scheduler.schedule().prefill is None  # no free slot: the third waits
    assert not scheduler.can_admit(1)
    assert scheduler.requeue_all() == 2
    assert scheduler.num_waiting == 3 and scheduler.num_running == 0
    assert all(s.num_cached_tokens == 0 for s in scheduler.waiting)


def test_an_identical_prompt_copies_the_cached_prefix_and_joins_the_decode_batch():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=4)
    prompt = list(range(10))
    first = seq(0, 0, prompt)
    scheduler.add(first)
    run_prefill(scheduler)
    twins = [seq(1, 0, prompt), seq(2, 0, prompt)]
    for twin in twins:
        scheduler.add(twin)
    plan = scheduler.schedule()
    # both start in this step: 9 positions copied, the last prompt token is their decode input
    assert plan.copies == [SlotMove(src=0, dst=1, length=9), SlotMove(src=0, dst=2, length=9)]
    assert plan.prefill is None and plan.decode == [first, *twins]
    assert [t.num_cached_tokens for t in twins] == [9, 9]
    assert all(t.status is SequenceStatus.DECODING for t in twins)
    assert_dense(scheduler)


def test_a_partly_shared_prompt_is_prefilled_from_the_end_of_the_shared_prefix():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=64)
    system = [5, 6, 7, 8, 9, 10]
    scheduler.add(seq(0, 0, system + [11, 12]))
    run_prefill(scheduler)
    scheduler.add(seq(1, 0, system + [40, 41, 42]))
    plan = scheduler.schedule()
    assert plan.copies == [SlotMove(src=0, dst=1, length=6)]
    assert (plan.prefill.start, plan.prefill.token_ids) == (6, [40, 41, 42])


def test_only_cached_positions_are_shared():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=64)
    first = seq(0, 0, [1, 2, 3])
    scheduler.add(first)
    run_prefill(scheduler)  # tokens [1, 2, 3, 7]: the sampled 7 is not cached yet
    assert first.num_cached_tokens == 3
    scheduler.add(seq(1, 0, [1, 2, 3, 7, 8]))
    plan = scheduler.schedule()
    assert plan.copies == [SlotMove(src=0, dst=1, length=3)]
    assert plan.prefill.token_ids == [7, 8]


def test_sharing_stops_at_the_first_different_token():
    for differ_at in (1, 37, 64, 98):
        scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=64)
        scheduler.add(seq(0, 0, list(range(100))))
        run_prefill(scheduler)
        other = list(range(100))
        other[differ_at] = -1
        scheduler.add(seq(1, 0, other))
        assert scheduler.schedule().copies == [SlotMove(src=0, dst=1, length=differ_at)]


def test_without_prefix_sharing_every_prompt_is_prefilled_in_full():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=64, share_prefixes=False)
    scheduler.add(seq(0, 0, [1, 2, 3, 4]))
    run_prefill(scheduler)
    scheduler.add(seq(1, 0, [1, 2, 3, 4]))
    plan = scheduler.schedule()
    assert plan.copies == [] and (plan.prefill.start, plan.prefill.token_ids) == (0, [1, 2, 3, 4])


def decode_steps(seq_: Sequence, tokens: list[int]) -> None:
    """What the engine does for `seq_` over len(tokens) decode steps."""
    for token in tokens:
        seq_.num_cached_tokens += 1
        seq_.token_ids.append(token)


def test_a_finished_last_sequence_leaves_its_rows_in_place_for_the_next_turn():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=64)
    first = seq(0, 0, [1, 2, 3, 4, 5, 6])
    scheduler.add(first)
    run_prefill(scheduler)
    decode_steps(first, [8, 9])  # tokens [1..6, 7, 8, 9]: 8 positions cached
    assert scheduler.finish(first, "stop") == []
    assert scheduler.retained[0].length == 8
    next_turn = seq(1, 0, first.token_ids[:8] + [50, 51])
    scheduler.add(next_turn)
    plan = scheduler.schedule()
    assert plan.copies == [] and next_turn.slot == 0  # the rows are already there
    assert (plan.prefill.start, plan.prefill.token_ids) == (8, [50, 51])
    assert scheduler.retained == {}


def running_pair_with_a_used_slot_above(scheduler: Scheduler) -> tuple[Sequence, Sequence]:
    """Two decoding sequences in slots 0 and 1, and slot 2 used once (by a prompt cancelled mid-prefill)."""
    first, second = seq(0, 6), seq(1, 5)
    for s in (first, second):
        scheduler.add(s)
        run_prefill(scheduler)
    pending = seq(9, 40)
    scheduler.add(pending)
    scheduler.prefill_done(scheduler.schedule().prefill)
    assert scheduler.finish(pending, "canceled") == []
    return first, second


def test_retained_rows_go_to_a_used_slot_above_the_running_ones_until_a_new_sequence_claims_it():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=16)
    first, second = running_pair_with_a_used_slot_above(scheduler)
    moves = scheduler.finish(first, "stop")
    assert moves == [SlotMove(src=0, dst=2, length=6), SlotMove(src=1, dst=0, length=5)]  # the copy goes first
    assert list(scheduler.retained) == [2]
    scheduler.add(seq(2, 4))  # an unrelated prompt takes slot 1
    run_prefill(scheduler)
    assert list(scheduler.retained) == [2]
    scheduler.add(seq(3, 4))
    plan = scheduler.schedule()
    assert plan.prefill.seq.slot == 2 and plan.copies == [] and scheduler.retained == {}
    assert_dense(scheduler)


def test_retention_never_touches_a_slot_no_sequence_has_used():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=64)
    first, second = seq(0, 5), seq(1, 5)
    for s in (first, second):
        scheduler.add(s)
        run_prefill(scheduler)
    assert scheduler.finish(first, "stop") == [SlotMove(src=1, dst=0, length=5)]
    assert scheduler.retained == {}


def test_a_retained_prefix_is_shared_by_copy_and_dropped_on_requeue():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=16)
    first, second = running_pair_with_a_used_slot_above(scheduler)
    scheduler.finish(first, "stop")  # retained in slot 2, `second` moves to slot 0
    again = seq(2, 0, first.token_ids[:6] + [70])
    scheduler.add(again)
    plan = scheduler.schedule()
    assert plan.copies == [SlotMove(src=2, dst=1, length=6)]
    assert scheduler.counters["prefix_shared_tokens"] == 6
    scheduler.requeue_all()
    assert scheduler.retained == {}


def test_without_a_free_used_slot_the_least_recently_used_retained_prefix_makes_room():
    scheduler = Scheduler(max_slots=4, max_waiting=8, prefill_chunk=16)
    first, second = running_pair_with_a_used_slot_above(scheduler)
    scheduler.finish(first, "stop")  # retained in slot 2, the only used slot above the running ones
    other = seq(3, 4)
    scheduler.add(other)
    run_prefill(scheduler)  # slots 0 (second) and 1 (other) run
    moves = scheduler.finish(second, "stop")
    assert moves == [SlotMove(src=0, dst=2, length=second.num_cached_tokens), SlotMove(src=1, dst=0, length=4)]
    assert list(scheduler.retained) == [2] and scheduler.retained[2].token_ids == second.token_ids

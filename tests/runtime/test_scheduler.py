"""Scheduler: dense KV slots, chunked prefill interleaved with decode, slot moves when a sequence leaves."""
from mistralrs.runtime.scheduler import Scheduler, SlotMove
from mistralrs.runtime.sequence import Sequence, SequenceStatus


def seq(seq_id: int, prompt_len: int) -> Sequence:
    return Sequence(seq_id, f"r{seq_id}", 0, list(range(prompt_len)), prompt_len, max_total_tokens=1000)


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

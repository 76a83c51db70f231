"""Scheduler: admission, prefix sharing, chunked prefill and continuous-batching decode over dense KV slots.

Invariant: decoding sequences hold slots [0, D) and the one sequence being prefilled holds slot D,
so every decode step is one forward over consecutive rows. When a sequence leaves, the scheduler
returns the slot moves that restore the invariant; the engine applies them to the KV cache.

Prefix sharing: an admitted sequence first copies the KV rows of the longest token prefix it shares with a
decoding sequence (the same system prompt, the n choices of one request, identical concurrent requests) or with a
retained one. One position is always left to compute, since its logits give the first token; a sequence with only
that position left joins the decode batch at once instead of taking a prefill step.

Retained prefixes: a finished sequence's rows are kept in a free slot above the running ones (where they already
are when it held the last slot, else copied there) until a new sequence claims that slot or a newer one needs it,
so the next turn of a conversation, which resends the whole conversation, prefills only its new messages. Copies
only go to slots that running sequences have used before: until the engine has faulted the cache in (while idle,
runtime/memory.py), a slot's first use costs a fault per 2 MB huge page it touches (about 0.5 s a slot for
SmolLM2's cache), a price for serving more streams, not for retention.
"""
from collections import Counter, deque
from dataclasses import dataclass, field

from .sequence import Sequence, SequenceStatus


@dataclass(slots=True)
class PrefillChunk:
    seq: Sequence
    start: int  # positions already cached
    token_ids: list[int]

    @property
    def is_last(self) -> bool:
        return self.start + len(self.token_ids) == self.seq.num_tokens


@dataclass(slots=True)
class SlotMove:
    src: int
    dst: int
    length: int


@dataclass(slots=True)
class RetainedPrefix:
    token_ids: list[int]
    length: int  # cached positions
    last_used: int  # schedule() call that created or last shared it (least recently used goes first)


@dataclass(slots=True)
class StepPlan:
    prefill: PrefillChunk | None = None
    decode: list[Sequence] = field(default_factory=list)
    copies: list[SlotMove] = field(default_factory=list)  # shared prefixes, applied before the forwards

    @property
    def is_empty(self) -> bool:
        return self.prefill is None and not self.decode


class Scheduler:
    def __init__(self, max_slots: int, max_waiting: int, prefill_chunk: int, share_prefixes: bool = True):
        self.max_slots, self.max_waiting, self.prefill_chunk = max_slots, max_waiting, prefill_chunk
        self.share_prefixes = share_prefixes
        self.waiting: deque[Sequence] = deque()
        self.decoding: list[Sequence] = []
        self.prefilling: Sequence | None = None
        self.retained: dict[int, RetainedPrefix] = {}  # by slot
        self._slots_used = 0  # slots [0, _slots_used) have held rows
        self.counters: Counter = Counter()
        self._clock = 0

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.decoding) + (self.prefilling is not None)

    def can_admit(self, count: int) -> bool:
        return len(self.waiting) + count <= self.max_waiting

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.decoding or self.prefilling)

    def schedule(self) -> StepPlan:
        """One prefill chunk (if a prompt is pending) plus one decode step over every decoding sequence."""
        self._clock += 1
        copies = []
        while self.prefilling is None and self.waiting and len(self.decoding) < self.max_slots:
            copies += self._start(self.waiting.popleft())
        plan = StepPlan(decode=list(self.decoding), copies=copies)
        if self.prefilling is not None:
            seq = self.prefilling
            start = seq.num_cached_tokens
            plan.prefill = PrefillChunk(seq, start, seq.token_ids[start:start + self.prefill_chunk])
        return plan

    def _start(self, seq: Sequence) -> list[SlotMove]:
        """Give `seq` the next slot with its shared prefix copied in; it decodes at once if one position is left."""
        seq.slot, seq.num_cached_tokens = len(self.decoding), 0
        self._slots_used = max(self._slots_used, seq.slot + 1)
        donor_slot, shared = self._longest_shared_prefix(seq)
        self.retained.pop(seq.slot, None)  # claimed: if it was the donor, its rows are already in place
        copies = [SlotMove(donor_slot, seq.slot, shared)] if shared and donor_slot != seq.slot else []
        if donor_slot in self.retained:
            self.retained[donor_slot].last_used = self._clock
        seq.num_cached_tokens = shared
        self.counters["prefix_shared_sequences"] += bool(shared)
        self.counters["prefix_shared_tokens"] += shared
        if seq.num_uncached == 1:
            seq.status = SequenceStatus.DECODING
            self.decoding.append(seq)
        else:
            seq.status = SequenceStatus.PREFILLING
            self.prefilling = seq
        return copies

    def _longest_shared_prefix(self, seq: Sequence) -> tuple[int | None, int]:
        """(slot, length) of the longest cached prefix `seq` shares with a running or retained sequence."""
        if not self.share_prefixes:
            return None, 0
        donors = [(d.slot, d.token_ids, d.num_cached_tokens) for d in self.decoding]
        donors += [(slot, r.token_ids, r.length) for slot, r in self.retained.items()]
        best_slot, best_len = None, 0
        for slot, token_ids, cached in donors:
            length = _common_prefix(seq.token_ids, token_ids, min(seq.num_tokens - 1, cached))
            if length > best_len:
                best_slot, best_len = slot, length
        return best_slot, best_len

    def prefill_done(self, chunk: PrefillChunk) -> None:
        seq = chunk.seq
        seq.num_cached_tokens = chunk.start + len(chunk.token_ids)
        if chunk.is_last:
            seq.status = SequenceStatus.DECODING
            self.decoding.append(seq)
            self.prefilling = None

    def finish(self, seq: Sequence, reason: str) -> list[SlotMove]:
        """Retire `seq` wherever it is; return the KV slot moves that keep slots dense."""
        seq.finish_reason, previous = reason, seq.status
        seq.status = SequenceStatus.FINISHED
        if previous is SequenceStatus.WAITING:
            self.waiting.remove(seq)
            return []
        if previous is SequenceStatus.PREFILLING:
            self.prefilling = None
            return []
        return self._retain(seq) + self._close_gap(seq)

    def _retain(self, seq: Sequence) -> list[SlotMove]:
        """Keep the finished `seq`'s rows in a free slot; the copy, if one is needed, precedes the gap's moves."""
        if not self.share_prefixes or not seq.num_cached_tokens:
            return []
        is_last = seq.slot == len(self.decoding) - 1 and self.prefilling is None
        slot = seq.slot if is_last else self._free_slot(len(self.decoding) + (self.prefilling is not None))
        if slot is None:
            return []
        self.retained[slot] = RetainedPrefix(list(seq.token_ids), seq.num_cached_tokens, self._clock)
        self.counters["prefix_retained_sequences"] += 1
        return [] if is_last else [SlotMove(seq.slot, slot, seq.num_cached_tokens)]

    def _free_slot(self, lowest: int) -> int | None:
        """The highest slot from `lowest` up that has been used and holds nothing, else the least recently used
        retained prefix's slot, else None."""
        for slot in range(self._slots_used - 1, lowest - 1, -1):
            if slot not in self.retained:
                return slot
        if not self.retained:
            return None
        oldest = min(self.retained, key=lambda slot: self.retained[slot].last_used)
        del self.retained[oldest]
        return oldest

    def _close_gap(self, seq: Sequence) -> list[SlotMove]:
        moves = []
        hole = seq.slot
        last = self.decoding.pop()
        if last is not seq:
            self.decoding[self.decoding.index(seq)] = last
            moves.append(self._move(last, hole))
        if self.prefilling is not None:
            moves.append(self._move(self.prefilling, len(self.decoding)))
        seq.slot = None
        return moves

    @staticmethod
    def _move(seq: Sequence, dst: int) -> SlotMove:
        move = SlotMove(seq.slot, dst, seq.num_cached_tokens)
        seq.slot = dst
        return move

    def requeue_all(self) -> int:
        """Send every running sequence back to prefill (its KV cache must be recomputed, e.g. after a model swap)."""
        running = self.decoding + ([self.prefilling] if self.prefilling else [])
        self.decoding, self.prefilling = [], None
        self.retained.clear()
        for seq in reversed(running):
            seq.status, seq.slot, seq.num_cached_tokens = SequenceStatus.WAITING, None, 0
            self.waiting.appendleft(seq)
        return len(running)


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    """Length of the common prefix of a and b, at most `limit` (binary search on slice equality, which runs in C)."""
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low

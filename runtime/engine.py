"""Engine: one per loaded model; a background thread runs schedule -> forward -> sample -> emit.

A thread (not a process) because the backends release the GIL while they compute, so HTTP threads
stay responsive, and requests, cancellations and model swaps reach the loop through a queue with no
serialization. Everything but the executor call is plain Python and numpy.
"""
import itertools
import logging
import os
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .artifact import Artifact
from .errors import EngineOverloaded, EngineUnavailable, InvalidRequest
from .executors import ModelExecutor, create_executor
from .generation import GenerationState, advance
from .handle import RequestHandle
from .outputs import ChoiceDelta, RequestDone, RequestError, RequestUsage
from .request import GenerationRequest
from .sampler import sample_batch
from .scheduler import PrefillChunk, Scheduler, SlotMove
from .sequence import Sequence
from .tokenizer import Tokenizer

logger = logging.getLogger("mistralrs.engine")


@dataclass(slots=True)
class EngineConfig:
    max_batch: int = 16
    max_seq_len: int | None = None  # default: min(model context, 4096)
    max_waiting: int = 256
    prefill_chunk: int = 512
    prefix_sharing: bool = True  # copy the KV rows a new prompt shares with a running sequence (scheduler.py)
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass(slots=True, eq=False)
class _Request:
    handle: RequestHandle
    seqs: list[Sequence]
    submitted: float
    prefilled: float | None = None
    num_open: int = 0


class Engine:
    def __init__(self, artifact: Artifact, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        self.tokenizer = Tokenizer.from_dir(artifact.tokenizer_dir, generation_config=artifact.generation_config)
        self.max_context = min(artifact.max_context, self.config.max_seq_len or 4096)
        self._load(artifact, self.build_executor(artifact))
        self.scheduler = Scheduler(self.config.max_batch, self.config.max_waiting, self.config.prefill_chunk,
                                   self.config.prefix_sharing)
        self.counters: Counter = Counter()
        self._requests: dict[str, _Request] = {}
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wakeup = threading.Event()
        self._admitted = 0  # requests accepted but not finished, for admission control
        self._lock = threading.Lock()
        self._seq_ids = itertools.count()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="mistralrs-engine", daemon=True)
        self._thread.start()

    def build_executor(self, artifact: Artifact) -> ModelExecutor:
        return create_executor(artifact, self.config.max_batch, self.max_context, self.config.threads)

    def _load(self, artifact: Artifact, executor: ModelExecutor) -> None:
        self.artifact, self.executor = artifact, executor
        self.model_name = artifact.name
        self.generation_defaults = artifact.generation_config
        self.info = {"artifact": str(artifact.root), "backend": artifact.backend, "target": artifact.target.label,
                     "isq": artifact.isq, "max_batch": self.config.max_batch, "max_context": self.max_context}

    # -- client side (any thread) ----------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> RequestHandle:
        self._validate(request)
        with self._lock:
            if self._stopping:
                raise EngineUnavailable("the engine is shutting down")
            if self._admitted - self.scheduler.num_running >= self.config.max_waiting:
                raise EngineOverloaded(f"the waiting queue is full ({self.config.max_waiting} requests)", retry_after_s=1)
            self._admitted += 1
        handle = RequestHandle(f"req-{uuid.uuid4().hex}", self.cancel)
        self._inbox.put(("submit", handle, request))
        self._wakeup.set()
        return handle

    def _validate(self, request: GenerationRequest) -> None:
        if not request.prompt_token_ids:
            raise InvalidRequest("Received an empty prompt.", param="prompt")
        if request.n < 1:
            raise InvalidRequest("Number of choices must be greater than 0.", param="n")
        if len(request.prompt_token_ids) >= self.max_context:
            raise InvalidRequest(
                f"Prompt sequence length ({len(request.prompt_token_ids)} tokens) must be below the context length "
                f"of {self.max_context}; shorten it or use `truncate_sequence`", param="messages")
        if request.stopping.max_tokens is not None and request.stopping.max_tokens < 1:
            raise InvalidRequest("max_tokens must be at least 1.", param="max_tokens")

    def cancel(self, request_id: str) -> None:
        self._inbox.put(("cancel", request_id, None))
        self._wakeup.set()

    def swap(self, artifact: Artifact, executor: ModelExecutor, done: threading.Event | None = None) -> None:
        """Serve `artifact` from the next step on; running sequences recompute their KV cache on it."""
        self._inbox.put(("swap", (artifact, executor), done))
        self._wakeup.set()

    def stats(self) -> dict:
        return {"running": self.scheduler.num_running, "waiting": self.scheduler.num_waiting,
                "retained_prefixes": len(self.scheduler.retained), **self.counters, **self.scheduler.counters}

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
        self._wakeup.set()
        self._thread.join(timeout)

    # -- engine thread ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping:
            self._drain_inbox()
            if not self.scheduler.has_work():
                if not self.executor.populate_step():  # idle: fault the KV cache in, a slot's tensor at a time
                    self._wakeup.wait(0.5)
                    self._wakeup.clear()
                continue
            self._step()
        self._fail_all("the engine shut down")

    def _drain_inbox(self) -> None:
        while True:
            try:
                kind, payload, extra = self._inbox.get_nowait()
            except queue.Empty:
                return
            {"submit": self._admit, "cancel": self._cancel, "swap": self._swap}[kind](payload, extra)

    def _admit(self, handle: RequestHandle, request: GenerationRequest) -> None:
        prompt = list(request.prompt_token_ids)
        limit = min(self.max_context, len(prompt) + (request.stopping.max_tokens or self.max_context))
        seqs = [Sequence(next(self._seq_ids), handle.request_id, i, list(prompt), len(prompt), limit)
                for i in range(request.n)]
        for seq in seqs:
            seq.state["generation"] = GenerationState.create(request, seq.choice_index, self.tokenizer,
                                                             self.generation_defaults)
            self.scheduler.add(seq)
        self._requests[handle.request_id] = _Request(handle, seqs, time.perf_counter(), num_open=len(seqs))
        self.counters["requests_total"] += 1

    def _cancel(self, request_id: str, _=None) -> None:
        request = self._requests.get(request_id)
        if request is None:
            return
        for seq in request.seqs:
            if not seq.is_finished:
                self._finish(seq, ChoiceDelta(seq.choice_index, "", [], finish_reason="canceled"))
        self.counters["requests_canceled"] += 1

    def _swap(self, payload, done: threading.Event | None) -> None:
        artifact, executor = payload
        self.counters["recomputed_sequences"] += self.scheduler.requeue_all()
        self._load(artifact, executor)
        self.counters["model_swaps"] += 1
        logger.info("now serving %s (isq %s)", artifact.root, artifact.isq)
        if done:
            done.set()

    def _step(self) -> None:
        plan = self.scheduler.schedule()
        try:
            self._apply(plan.copies)
            if plan.decode:
                self._decode(plan.decode)
            if plan.prefill:
                self._prefill(plan.prefill)
        except Exception as e:  # a failed forward must not take the engine down
            logger.exception("forward failed")
            self._fail_sequences(plan.decode + ([plan.prefill.seq] if plan.prefill else []), str(e))

    def _decode(self, seqs: list[Sequence]) -> None:
        tokens = np.array([[s.token_ids[-1]] for s in seqs], np.int64)
        past = np.array([s.num_cached_tokens for s in seqs], np.int64)
        logits = self._decode_forward(seqs, tokens, past)
        for seq in seqs:
            seq.num_cached_tokens += 1
        self.counters["decode_steps"] += 1
        self.counters["decode_tokens"] += len(seqs)
        if len(seqs) > 1:
            self.counters["batched_decode_steps"] += 1
        self.counters["max_decode_batch"] = max(self.counters["max_decode_batch"], len(seqs))
        sampled = sample_batch(logits, [s.state["generation"].sampler for s in seqs])
        for seq, token in zip(seqs, sampled):
            if seq.num_generated == 0:  # its prompt was shared but for the last position: this is its first token
                self._mark_prefilled(seq)
            self._emit(seq, advance(seq, token, self.tokenizer))

    def _decode_forward(self, seqs: list[Sequence], tokens: np.ndarray, past: np.ndarray) -> np.ndarray:
        """One decode step's logits. Sequences whose shared prefix left them only their prompt's last position joined
        this step at the end of the batch; where decode steps run other kernels than prompts, that position is
        computed as a prompt's (so a prompt's first token does not depend on whether its prefix was shared)."""
        joined = next((i for i, s in enumerate(seqs) if s.num_generated == 0), len(seqs))
        if not self.executor.decodes_differently or joined == len(seqs):
            return self.executor.forward(0, tokens, past)
        ends = self.executor.forward_prompt_end(joined, tokens[joined:], past[joined:])
        return ends if joined == 0 else np.concatenate([self.executor.forward(0, tokens[:joined], past[:joined]), ends])

    def _prefill(self, chunk: PrefillChunk) -> None:
        seq = chunk.seq
        logits = self.executor.forward(seq.slot, np.array([chunk.token_ids], np.int64), np.array([chunk.start]))
        self.scheduler.prefill_done(chunk)
        self.counters["prefill_chunks"] += 1
        self.counters["prefill_tokens"] += len(chunk.token_ids)
        if chunk.is_last:
            self._mark_prefilled(seq)
            sampled = sample_batch(logits, [seq.state["generation"].sampler])[0]
            self._emit(seq, advance(seq, sampled, self.tokenizer))

    def _mark_prefilled(self, seq: Sequence) -> None:
        request = self._requests[seq.request_id]
        request.prefilled = request.prefilled or time.perf_counter()

    def _emit(self, seq: Sequence, delta: ChoiceDelta) -> None:
        if delta.finish_reason:
            self._finish(seq, delta)
        elif delta.text or delta.logprobs:
            self._requests[seq.request_id].handle.push(delta)

    def _finish(self, seq: Sequence, delta: ChoiceDelta) -> None:
        self._apply(self.scheduler.finish(seq, delta.finish_reason))
        request = self._requests[seq.request_id]
        request.handle.push(delta)
        request.num_open -= 1
        if request.num_open == 0:
            self._close(request)

    def _apply(self, moves: list[SlotMove]) -> None:
        for move in moves:
            self.executor.copy_slot(move.src, move.dst, move.length)

    def _close(self, request: _Request) -> None:
        now = time.perf_counter()
        prefilled = request.prefilled or now
        usage = RequestUsage(request.seqs[0].num_prompt_tokens, sum(s.num_generated for s in request.seqs),
                             prefilled - request.submitted, now - prefilled)
        request.handle.push(RequestDone(usage))
        del self._requests[request.handle.request_id]
        self.counters["generated_tokens"] += usage.completion_tokens
        with self._lock:
            self._admitted -= 1

    def _fail_sequences(self, seqs: list[Sequence], message: str) -> None:
        for request_id in {s.request_id for s in seqs}:
            self._fail(self._requests.get(request_id), message)

    def _fail_all(self, message: str) -> None:
        for request in list(self._requests.values()):
            self._fail(request, message)

    def _fail(self, request: _Request | None, message: str) -> None:
        if request is None:
            return
        for seq in request.seqs:
            if not seq.is_finished:
                self._apply(self.scheduler.finish(seq, "error"))
        request.handle.push(RequestError(message))
        del self._requests[request.handle.request_id]
        with self._lock:
            self._admitted -= 1

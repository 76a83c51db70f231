"""The engine requests behind one API call: submission, event merging, and collection."""
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from mistralrs.runtime.handle import RequestHandle
from mistralrs.runtime.outputs import ChoiceDelta, Event, RequestDone, RequestError, RequestUsage, TokenLogprob
from mistralrs.runtime.request import GenerationRequest

from .errors import ENGINE_ERRORS, from_engine, server_error


class Generation:
    """One engine request per prompt, read in prompt order; choice indices become prompt_index * n + i."""

    def __init__(self, handles: list[RequestHandle], n: int):
        self.handles = handles
        self.n = n

    def events(self, timeout: float | None) -> Iterator[Event | None]:
        """ChoiceDeltas, then one RequestDone with the summed usage (or a RequestError); None on timeout."""
        usages = []
        for prompt_index, handle in enumerate(self.handles):
            event = handle.next_event(timeout)
            while event is None or isinstance(event, ChoiceDelta):
                yield event if event is None else replace(event, index=prompt_index * self.n + event.index)
                event = handle.next_event(timeout)
            if isinstance(event, RequestError):
                yield event
                return
            usages.append(event.usage)
        yield RequestDone(_sum_usage(usages))

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()


def submit(engine, requests: list[GenerationRequest]) -> Generation:
    generation = Generation([], requests[0].n)
    try:
        for request in requests:
            generation.handles.append(_submit_one(engine, request))
    except Exception:
        generation.cancel()
        raise
    return generation


def _submit_one(engine, request: GenerationRequest) -> RequestHandle:
    try:
        return engine.submit(request)
    except ENGINE_ERRORS as error:
        raise from_engine(error) from error


@dataclass(slots=True)
class ChoiceResult:
    index: int
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None

    def add(self, delta: ChoiceDelta) -> None:
        self.text += delta.text
        self.logprobs.extend(delta.logprobs)
        self.finish_reason = delta.finish_reason or self.finish_reason


def collect(generation: Generation) -> tuple[list[ChoiceResult], RequestUsage]:
    """Wait for a whole non-streamed generation; a RequestError becomes a 500."""
    results: dict[int, ChoiceResult] = {}
    try:
        for event in generation.events(None):
            if isinstance(event, RequestError):
                raise server_error(event.message)
            if isinstance(event, ChoiceDelta):
                results.setdefault(event.index, ChoiceResult(event.index)).add(event)
            else:
                usage = event.usage
    finally:
        generation.cancel()
    return [results[i] for i in sorted(results)], usage


def _sum_usage(usages: list[RequestUsage]) -> RequestUsage:
    """Token counts add up; the prompts ran concurrently, so times are the longest."""
    return RequestUsage(
        prompt_tokens=sum(u.prompt_tokens for u in usages),
        completion_tokens=sum(u.completion_tokens for u in usages),
        prompt_time_s=max(u.prompt_time_s for u in usages),
        completion_time_s=max(u.completion_time_s for u in usages),
    )

"""The client side of one submitted request: a queue of events plus cancellation."""
import queue
from collections.abc import Callable, Iterator

from .outputs import Event, RequestDone, RequestError


class RequestHandle:
    def __init__(self, request_id: str, on_cancel: Callable[[str], None]):
        self.request_id = request_id
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._on_cancel = on_cancel
        self.is_finished = False

    def push(self, event: Event) -> None:
        """Engine side: deliver one event."""
        self._events.put(event)

    def next_event(self, timeout: float | None = None) -> Event | None:
        """Block for the next event; None when `timeout` seconds pass without one."""
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(event, (RequestDone, RequestError)):
            self.is_finished = True
        return event

    def __iter__(self) -> Iterator[Event]:
        while not self.is_finished:
            yield self.next_event()

    def cancel(self) -> None:
        """Stop generating and free the request's KV state; idempotent."""
        if not self.is_finished:
            self._on_cancel(self.request_id)

"""Server-sent events: `data:` framing, keep-alive comments, the [DONE] terminator, cancel on disconnect."""
import os
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Protocol

import falcon

from mistralrs.runtime.outputs import ChoiceDelta, RequestDone, RequestUsage

from .encoding import dumps
from .errors import error_body
from .generation import Generation
from .logs import log_request, logger

DEFAULT_KEEP_ALIVE_MS = 10_000
KEEP_ALIVE = b":\n\n"
DONE = b"data: [DONE]\n\n"


def data(payload: dict) -> bytes:
    return b"data: " + dumps(payload).encode() + b"\n\n"


def keep_alive_interval_s() -> float:
    return _parse_interval_ms(os.environ.get("KEEP_ALIVE_INTERVAL")) / 1000


@lru_cache(maxsize=8)
def _parse_interval_ms(raw: str | None) -> int:
    """Cached so that a bad value is warned about once, not on every stream."""
    if raw is None:
        return DEFAULT_KEEP_ALIVE_MS
    try:
        interval_ms = int(raw)
    except ValueError:
        interval_ms = 0
    if interval_ms <= 0:
        logger.warning("KEEP_ALIVE_INTERVAL=%r is not a positive number of milliseconds; using %d",
                       raw, DEFAULT_KEEP_ALIVE_MS)
        return DEFAULT_KEEP_ALIVE_MS
    return interval_ms


class ChunkRenderer(Protocol):
    """Turns engine events into chunk payloads; chat and completions each provide one."""

    def delta(self, delta: ChoiceDelta) -> dict: ...

    def done(self, done: RequestDone) -> dict | None: ...


def stream(resp: falcon.Response, generation: Generation, renderer: ChunkRenderer, req: falcon.Request) -> None:
    resp.content_type = "text/event-stream"
    resp.set_header("Cache-Control", "no-cache")
    resp.stream = _events(generation, renderer, lambda status, usage: log_request(req, status, usage))


def _events(generation: Generation, renderer: ChunkRenderer,
            log_end: Callable[[str, RequestUsage | None], None]) -> Iterator[bytes]:
    """Closing this generator (client gone) cancels the generation at its next yield."""
    status, usage = "stream-canceled", None
    try:
        for event in generation.events(keep_alive_interval_s()):
            if event is None:
                yield KEEP_ALIVE
            elif isinstance(event, ChoiceDelta):
                yield data(renderer.delta(event))
            elif isinstance(event, RequestDone):
                status, usage = "stream-done", event.usage
                if (final := renderer.done(event)) is not None:
                    yield data(final)
            else:
                status = "stream-error"
                logger.error("engine error during a stream: %s", event.message)
                yield data(error_body(event.message, "server_error"))
        yield DONE
    except Exception as error:
        status = "stream-error"
        logger.error("stream failed", exc_info=error)
        yield data(error_body("The server had an error while streaming the response.", "server_error"))
        yield DONE
    finally:
        generation.cancel()
        log_end(status, usage)

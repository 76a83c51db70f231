"""One log line per request event, on the "mistralrs.api" logger."""
import logging
import time

import falcon

from mistralrs.runtime.outputs import RequestUsage

logger = logging.getLogger("mistralrs.api")


def log_request(req: falcon.Request, status: str, usage: RequestUsage | None = None) -> None:
    tokens = f" prompt_tokens={usage.prompt_tokens} completion_tokens={usage.completion_tokens}" if usage else ""
    duration_ms = (time.monotonic() - req.context.started) * 1000
    logger.info("request_id=%s %s %s status=%s%s duration_ms=%.1f", req.context.request_id, req.method, req.path,
                status, tokens, duration_ms)

"""Per-request middleware: request ids with an access log line, and the optional API key check."""
import hmac
import time
import uuid

import falcon

from .errors import APIError
from .logs import log_request

OPEN_PATHS = frozenset({"/", "/health", "/docs", "/api-doc/openapi.json"})


class RequestContext:
    """Echoes `x-request-id` (or makes `req_<uuid hex>`) and logs one line once the response is ready."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.request_id = req.get_header("x-request-id") or f"req_{uuid.uuid4().hex}"
        req.context.started = time.monotonic()
        req.context.usage = None

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        resp.set_header("x-request-id", req.context.request_id)
        status = f"{resp.status_code}{'-stream-open' if resp.stream is not None else ''}"
        log_request(req, status, req.context.usage)


class ApiKeyCheck:
    """`Authorization: Bearer <key>` on every route except the health checks and the docs."""

    def __init__(self, api_key: str):
        self.expected = f"Bearer {api_key}".encode()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.method == "OPTIONS" or req.path in OPEN_PATHS:
            return
        given = req.get_header("Authorization")
        if given is None:
            raise APIError(401, "You didn't provide an API key. Send it in an Authorization header using Bearer "
                                "auth (Authorization: Bearer YOUR_KEY).", code="invalid_api_key")
        if not hmac.compare_digest(given.encode(), self.expected):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

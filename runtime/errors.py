"""Errors the engine raises at submit time; the API maps them onto HTTP statuses."""


class InvalidRequest(ValueError):
    """The request can never be served as asked (HTTP 400)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class EngineOverloaded(RuntimeError):
    """The waiting queue is full (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EngineUnavailable(RuntimeError):
    """The engine is shutting down or failed (HTTP 503)."""

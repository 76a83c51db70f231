"""Every error leaves the server in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
import falcon

from mistralrs.runtime.errors import EngineOverloaded, EngineUnavailable, InvalidRequest

from .encoding import dumps
from .logs import logger


class APIError(falcon.HTTPError):
    """An HTTP error with OpenAI's error fields."""

    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(falcon.code_to_http_status(status), description=message, headers=headers)
        self.error_type = error_type
        self.param = param
        self.error_code = code


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def server_error(message: str) -> APIError:
    return APIError(500, message, "server_error")


ENGINE_ERRORS = (InvalidRequest, EngineOverloaded, EngineUnavailable)


def from_engine(error: InvalidRequest | EngineOverloaded | EngineUnavailable) -> APIError:
    """The HTTP answer to an error raised by Engine.submit."""
    if isinstance(error, InvalidRequest):
        return invalid_request(str(error), error.param)
    if isinstance(error, EngineOverloaded):
        return APIError(429, str(error), "rate_limit_error", code="engine_overloaded",
                        headers={"Retry-After": str(error.retry_after_s)})
    return APIError(503, str(error), "server_error", code="engine_unavailable")


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Falcon error serializer: our APIErrors and falcon's own (404 route, 405 method, ...)."""
    if isinstance(error, APIError):
        body = error_body(error.description, error.error_type, error.param, error.error_code)
    else:
        status = falcon.http_status_to_code(error.status)
        error_type = "server_error" if status >= 500 else "invalid_request_error"
        body = error_body(_falcon_message(req, error), error_type)
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dumps(body).encode()


def _falcon_message(req: falcon.Request, error: falcon.HTTPError) -> str:
    if isinstance(error, falcon.HTTPRouteNotFound):
        return f"Invalid URL ({req.method} {req.path})"
    if isinstance(error, falcon.HTTPMethodNotAllowed):
        return f"Method {req.method} is not allowed for {req.path}"
    return error.description or error.title


def handle_unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: dict) -> None:
    """Catch-all: the traceback goes to the log, the client gets a generic 500."""
    request_id = getattr(req.context, "request_id", "-")
    logger.error("request_id=%s unhandled error on %s %s", request_id, req.method, req.path, exc_info=error)
    raise server_error(f"The server had an error while processing your request (request id {request_id}).")

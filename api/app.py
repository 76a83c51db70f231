"""The WSGI application: routes, middleware, JSON encoding and error handling."""
import falcon
import falcon.media

from mistralrs.runtime.requantize import Requantizer

from .chat import ChatCompletions
from .completions import Completions
from .encoding import dumps
from .errors import handle_unexpected, serialize_error
from .metrics import Metrics
from .middleware import ApiKeyCheck, RequestContext
from .models import Health, Models
from .openapi import Docs, OpenAPISpec
from .re_isq import ReIsq


def create_app(engine, api_key: str | None = None) -> falcon.App:
    """An OpenAI-compatible API over one engine; with `api_key`, requests must send it as a bearer token."""
    middleware = [RequestContext()] + ([ApiKeyCheck(api_key)] if api_key else [])
    app = falcon.App(middleware=middleware, cors_enable=True)
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=dumps)
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, handle_unexpected)
    _add_routes(app, engine)
    return app


def _add_routes(app: falcon.App, engine) -> None:
    health = Health()
    requantizer = Requantizer(engine)
    models = Models(engine, requantizer)
    app.add_route("/", health)
    app.add_route("/health", health)
    app.add_route("/v1/models", models)
    app.add_route("/v1/models/{model_id}", models, suffix="model")
    app.add_route("/v1/chat/completions", ChatCompletions(engine))
    app.add_route("/v1/completions", Completions(engine))
    app.add_route("/metrics", Metrics(engine))
    re_isq = ReIsq(requantizer)
    app.add_route("/re_isq", re_isq)
    app.add_route("/re_isq/{job_id}", re_isq, suffix="job")
    app.add_route("/docs", Docs())
    app.add_route("/api-doc/openapi.json", OpenAPISpec())

"""GET /api-doc/openapi.json (a hand-written OpenAPI 3 document) and GET /docs (a page that lists it)."""
import html

import falcon

from mistralrs import __version__


def _json(schema: str) -> dict:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _text(description: str) -> dict:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


_ERRORS = {str(status): {"description": description, **_json("Error")} for status, description in [
    (400, "Invalid request"), (401, "Missing or wrong API key"), (404, "Unknown model"),
    (413, "Body over 50 MiB"), (429, "Engine overloaded"), (500, "Server error"), (503, "Engine unavailable")]}

_GENERATION = {"description": "JSON, or server-sent events when `stream` is true (chunks, then `data: [DONE]`)"}

_SAMPLING = {
    "model": {"type": "string", "default": "default"},
    "max_tokens": {"type": "integer", "minimum": 1, "nullable": True},
    "max_completion_tokens": {"type": "integer", "minimum": 1, "nullable": True},
    "n": {"type": "integer", "minimum": 1, "default": 1},
    "temperature": {"type": "number", "minimum": 0, "nullable": True},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
    "top_k": {"type": "integer", "nullable": True},
    "min_p": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
    "frequency_penalty": {"type": "number", "nullable": True},
    "presence_penalty": {"type": "number", "nullable": True},
    "repetition_penalty": {"type": "number", "nullable": True},
    "logit_bias": {"type": "object", "additionalProperties": {"type": "number"}, "nullable": True},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}], "nullable": True},
    "seed": {"type": "integer", "nullable": True},
    "ignore_eos": {"type": "boolean", "default": False},
    "stream": {"type": "boolean", "default": False},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}, "nullable": True},
    "truncate_sequence": {"type": "boolean", "default": False},
}

_TOKEN_IDS = {"type": "array", "items": {"type": "integer"}}

OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "Mistral.rs", "version": __version__, "license": {"name": "MIT"},
             "description": "OpenAI-compatible text generation server."},
    "paths": {
        "/v1/chat/completions": {"post": {
            "summary": "Create a chat completion", "requestBody": {"required": True, **_json("ChatCompletionRequest")},
            "responses": {"200": _GENERATION, **_ERRORS}}},
        "/v1/completions": {"post": {
            "summary": "Create a text completion", "requestBody": {"required": True, **_json("CompletionRequest")},
            "responses": {"200": _GENERATION, **_ERRORS}}},
        "/v1/models": {"get": {"summary": "List the models",
                               "responses": {"200": {"description": "Model list", **_json("ModelList")}}}},
        "/v1/models/{model_id}": {"get": {
            "summary": "Describe one model",
            "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "Model card", **_json("Model")}, "404": _ERRORS["404"]}}},
        "/health": {"get": {"summary": "Health check", "responses": {"200": _text("OK")}}},
        "/": {"get": {"summary": "Health check", "responses": {"200": _text("OK")}}},
        "/metrics": {"get": {"summary": "Engine counters, Prometheus text format",
                             "responses": {"200": _text("Prometheus exposition")}}},
        "/docs": {"get": {"summary": "This API's documentation page", "responses": {"200": {"description": "HTML"}}}},
        "/api-doc/openapi.json": {"get": {"summary": "This OpenAPI document",
                                          "responses": {"200": {"description": "OpenAPI 3 JSON"}}}},
    },
    "components": {
        "schemas": {
            "ChatCompletionRequest": {"type": "object", "required": ["messages"], "properties": {
                "messages": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                "logprobs": {"type": "boolean", "default": False},
                "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20, "nullable": True},
                "tools": {"type": "array", "items": {"type": "object"}, "nullable": True},
                "tool_choice": {"oneOf": [{"type": "string", "enum": ["none", "auto", "required"]},
                                          {"type": "object"}], "nullable": True},
                "enable_thinking": {"type": "boolean", "nullable": True},
                "chat_template_kwargs": {"type": "object", "nullable": True},
                **_SAMPLING}},
            "CompletionRequest": {"type": "object", "required": ["prompt"], "properties": {
                "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                                     _TOKEN_IDS, {"type": "array", "items": _TOKEN_IDS}]},
                "echo": {"type": "boolean", "default": False},
                "suffix": {"type": "string", "nullable": True},
                "logprobs": {"type": "integer", "minimum": 0, "maximum": 5, "nullable": True},
                **_SAMPLING}},
            "Model": {"type": "object", "properties": {
                "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"},
                "owned_by": {"type": "string"}, "root": {"type": "string"}, "status": {"type": "string"},
                "isq": {"type": "string"}, "backend": {"type": "string"}, "target": {"type": "string"}}},
            "ModelList": {"type": "object", "properties": {
                "object": {"type": "string"},
                "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}},
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "message": {"type": "string"}, "type": {"type": "string"},
                "param": {"type": "string", "nullable": True}, "code": {"type": "string", "nullable": True}}}}},
        },
    },
}


class OpenAPISpec:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = OPENAPI


class Docs:
    """A plain page (no Swagger UI: this server may run offline) listing the routes and linking the document."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = _page()


def _page() -> str:
    routes = "".join(f"<li><code>{method.upper()} {html.escape(path)}</code>: {html.escape(op['summary'])}</li>"
                     for path, ops in OPENAPI["paths"].items() for method, op in ops.items())
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{OPENAPI['info']['title']} API</title>"
            f"</head><body><h1>{OPENAPI['info']['title']} API</h1><p>OpenAPI document: "
            f"<a href=\"/api-doc/openapi.json\">/api-doc/openapi.json</a></p><ul>{routes}</ul></body></html>")

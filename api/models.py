"""GET /v1/models, /v1/models/{model_id}, and the health checks / and /health."""
import time

import falcon

from .errors import APIError
from .protocol import DEFAULT_MODEL

OWNER = "local"


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "OK"


class Models:
    """The "default" pseudo-model first, then the loaded model with its build details (current ISQ level,
    and the running re_isq job, if any)."""

    def __init__(self, engine, requantizer=None):
        self.engine, self.requantizer = engine, requantizer
        self.created = int(time.time())

    @property
    def cards(self) -> list[dict]:
        engine, info = self.engine, self.engine.info
        active = self.requantizer.active if self.requantizer else None
        return [
            {"id": DEFAULT_MODEL, "object": "model", "created": self.created, "owned_by": OWNER, "root": DEFAULT_MODEL},
            {"id": engine.model_name, "object": "model", "created": self.created, "owned_by": OWNER,
             "root": engine.model_name, "status": "loaded", "isq": info.get("isq"), "backend": info.get("backend"),
             "target": info.get("target"), "re_isq": active.to_dict() if active else None},
        ]

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"object": "list", "data": self.cards}

    def on_get_model(self, req: falcon.Request, resp: falcon.Response, model_id: str) -> None:
        card = next((c for c in self.cards if c["id"] == model_id), None)
        if card is None:
            raise APIError(404, f"The model `{model_id}` does not exist.", param="model", code="model_not_found")
        resp.media = card

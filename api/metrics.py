"""GET /metrics: the engine's counters in Prometheus text exposition format."""
import re

import falcon

PREFIX = "mistralrs_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, engine):
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE
        resp.text = render(self.engine.stats())


def render(stats: dict) -> str:
    lines = []
    for key, value in stats.items():
        if isinstance(value, (int, float)):
            name = PREFIX + re.sub(r"[^a-zA-Z0-9_]", "_", key)
            lines += [f"# TYPE {name} untyped", f"{name} {_number(value)}"]
    return "\n".join(lines) + "\n"


def _number(value: int | float) -> str:
    return str(int(value)) if isinstance(value, int) else repr(float(value))

"""The OpenAI-compatible HTTP API (falcon, served by gunicorn)."""
from .app import create_app
from .server import run_server

__all__ = ["create_app", "run_server"]

"""Serving the app under gunicorn, started from Python."""
import logging
from collections.abc import Callable

import gunicorn.app.base

from .app import create_app
from .logs import logger

DEFAULT_TIMEOUT_S = 600


class _Server(gunicorn.app.base.BaseApplication):
    """gunicorn with one gthread worker that builds the engine after the fork.

    Exactly one worker: an engine holds the model weights, the KV cache and the scheduler, and must exist once
    per model. Several workers would each load the model and schedule separately, so requests could no longer
    be batched together. Concurrency comes from threads instead: each open connection (a stream holds one for
    its whole length) takes a thread, so `threads` is the most concurrent requests, and the engine batches them.
    The engine is created in the worker (`load`), not in the master: the master only forks and supervises.
    """

    def __init__(self, engine_factory: Callable[[], object], options: dict, url: str, api_key: str | None):
        self.engine_factory = engine_factory
        self.options = options
        self.url = url
        self.api_key = api_key
        self.engine = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        self.engine = self.engine_factory()
        _log_startup(self.engine, self.url)
        return create_app(self.engine, self.api_key)


def run_server(engine_factory: Callable[[], object], host: str, port: int, threads: int = 32,
               api_key: str | None = None, timeout: int = DEFAULT_TIMEOUT_S) -> None:
    """Serve until SIGTERM/SIGINT; must run in the main thread (gunicorn installs signal handlers).

    `timeout` is gunicorn's worker heartbeat limit. Under gthread long streams do not count against it, but
    building the engine does: keep it above the engine's load time.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = {
        "bind": f"{host}:{port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": timeout,
        "control_socket_disable": True,
        "worker_exit": _shutdown_engine,
    }
    _Server(engine_factory, options, f"http://{host}:{port}", api_key).run()


def _shutdown_engine(arbiter, worker) -> None:
    """gunicorn's worker_exit hook, run in the worker as it stops."""
    engine = getattr(worker.app, "engine", None)
    if engine is not None and hasattr(engine, "shutdown"):
        engine.shutdown()


def _log_startup(engine, url: str) -> None:
    info = engine.info
    logger.info("Serving on %s", url)
    logger.info("Model: %s", engine.model_name)
    logger.info("Artifact: %s", info.get("artifact"))
    logger.info("Backend: %s", info.get("backend"))
    logger.info("Target: %s", info.get("target"))
    logger.info("ISQ: %s", info.get("isq"))
    logger.info("Max batch: %s", info.get("max_batch"))

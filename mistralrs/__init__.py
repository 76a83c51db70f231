"""mistralrs-compile: compile checkpoints into artifacts, serve them with an OpenAI-compatible API."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """The seed's Python API, imported lazily so `mistralrs.compiler` and friends stay light."""
    if name in ("Runner", "Which", "ChatCompletionRequest", "CompletionRequest"):
        from . import python_api

        return getattr(python_api, name)
    raise AttributeError(name)

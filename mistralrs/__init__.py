"""mistralrs-compile: compile checkpoints into artifacts, serve them with an OpenAI-compatible API."""

__version__ = "0.1.0"

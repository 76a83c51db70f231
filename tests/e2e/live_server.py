"""`mistralrs serve` as a subprocess on a free port, an openai client of one, plus a reader for its Prometheus
/metrics."""
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai


def _mistralrs_command() -> list[str]:
    """The venv's `mistralrs` script, or the same CLI through `python -m` where the script is not installed."""
    script = Path(sys.executable).with_name("mistralrs")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mistralrs.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """One `mistralrs serve` process; its stdout and stderr go to `log_path`."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [*_mistralrs_command(), "serve", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})})

    def wait_until_healthy(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the server did not answer /health within {deadline_s} s\n{self.log()}")

    def log(self, max_chars: int = 20_000) -> str:
        text = self.log_path.read_text(errors="replace")
        return text if len(text) <= max_chars else "...\n" + text[-max_chars:]

    def stop(self, grace_s: float = 30) -> int:
        """SIGTERM, then SIGKILL after `grace_s`; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def served_client(args: list[str], log_path: Path) -> Iterator[openai.OpenAI]:
    """The openai SDK on a `mistralrs serve` started with `args`, which stops when the block ends."""
    server = LiveServer(args, log_path)
    try:
        server.wait_until_healthy(120)
        with openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="EMPTY", max_retries=0, timeout=120) as client:
            yield client
    finally:
        if server.stop() != 0:
            print(f"\nthe server ({' '.join(args)}) exited uncleanly:\n{server.log()}")


def greedy_chat(client: openai.OpenAI, messages: list[dict], **kwargs):
    return client.chat.completions.create(model="default", messages=messages, temperature=0, **kwargs)


def metrics(base_url: str) -> dict[str, float]:
    """GET /metrics as {name without the mistralrs_ prefix: value}."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split()
            values[name.removeprefix("mistralrs_")] = float(value)
    return values

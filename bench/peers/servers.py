"""W3: OpenAI-compatible servers on loopback (ours, llama-cpp-python's) and a concurrent chat-completion load.

Stdlib only: the client is the same for every server.
"""
import json
import socket
import statistics
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .client import runner_env


@dataclass(slots=True)
class ServerSpec:
    name: str
    command: list[str]  # "{port}" is replaced by a free port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, spec: ServerSpec, threads: int, log_dir: Path, start_timeout_s: float = 300):
        self.spec = spec
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"server-{spec.name}.log"
        self._log = self.log_path.open("w")
        command = [part.replace("{port}", str(self.port)) for part in spec.command]
        self._proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd="/",
                                      env=runner_env(threads, {}))
        self.model = self._wait_ready(start_timeout_s)

    def _wait_ready(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"server {self.spec.name} exited with {self._proc.returncode} (see {self.log_path})")
            try:
                with urllib.request.urlopen(f"{self.base}/v1/models", timeout=5) as response:
                    return json.load(response)["data"][0]["id"]
            except OSError:
                time.sleep(0.5)
        self.close()
        raise RuntimeError(f"server {self.spec.name} not ready within {timeout_s} s (see {self.log_path})")

    def chat(self, body: dict, timeout_s: float = 600) -> tuple[float, dict]:
        """(latency seconds, response JSON) of one non-streamed chat completion."""
        data = json.dumps({"model": self.model, **body}).encode()
        request = urllib.request.Request(f"{self.base}/v1/chat/completions", data,
                                         {"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            reply = json.load(response)
        return time.perf_counter() - start, reply

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()


def concurrent_chat(server: Server, body: dict, concurrency: int) -> dict:
    """`concurrency` identical requests at once: aggregate completion tok/s over the wall time, p50 latency."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda _: server.chat(body), range(concurrency)))
    wall = time.perf_counter() - start
    latencies = [latency for latency, _ in results]
    tokens = sum(reply["usage"]["completion_tokens"] for _, reply in results)
    return {"aggregate_tok_s": tokens / wall, "p50_latency_s": statistics.median(latencies), "wall_s": wall,
            "completion_tokens": tokens, "max_latency_s": max(latencies)}

"""The orchestrator's side of the runner protocol: start a runner in its venv, send requests, read replies."""
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent

# Variables that would let a runner import the wrong `mistralrs` or change its thread count.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


class PeerError(RuntimeError):
    pass


@dataclass(slots=True)
class PeerSpec:
    """One configuration to measure: a runner script, the interpreter of its venv and its arguments."""

    name: str
    python: str
    script: str
    args: list[str]
    weights: str  # "fp32" | "int8" | "int4"
    env: dict[str, str] = field(default_factory=dict)  # on top of runner_env
    measure_quality: bool = True


def runner_env(threads: int, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "RAYON_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"})
    env.update(extra)
    return env


class Peer:
    """A running runner process; `request` blocks until its reply or `timeout_s`."""

    def __init__(self, spec: PeerSpec, threads: int, log_dir: Path, start_timeout_s: float = 600):
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self._log = self.log_path.open("w")
        command = [spec.python, str(PEERS_DIR / spec.script), *spec.args]
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                      text=True, cwd="/", env=runner_env(threads, spec.env))
        self.info = self._read(start_timeout_s)
        if not self.info.get("ready"):
            raise PeerError(f"{spec.name}: unexpected first line {self.info}")

    def request(self, op: str, timeout_s: float = 900, **kwargs) -> dict:
        self._proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self._proc.stdin.flush()
        reply = self._read(timeout_s)
        if not reply.get("ok"):
            raise PeerError(f"{self.spec.name} {op}: {reply.get('error')}")
        return reply

    def _read(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            ready, _, _ = select.select([self._proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self.close()
                raise PeerError(f"{self.spec.name}: no reply within {timeout_s:.0f} s (see {self.log_path})")
            line = self._proc.stdout.readline()
            if not line:
                tail = self.log_tail()
                self.close()
                raise PeerError(f"{self.spec.name}: runner exited ({tail})")
            if line.strip():
                return json.loads(line)

    def log_tail(self, num_lines: int = 5) -> str:
        self._log.flush()
        return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-num_lines:])

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write('{"op": "quit"}\n')
                self._proc.stdin.flush()
                self._proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._log.close()

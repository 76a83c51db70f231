"""The runners' JSON-lines protocol, shared by every runner whatever its venv (stdlib only).

A runner prints one line `{"ready": true, ...info}` once its model is loaded, then answers each request line
read from stdin (`{"op": NAME, ...kwargs}`) with one line `{"ok": true, ...result}` or
`{"ok": false, "error": "..."}`. `{"op": "quit"}` (or EOF) ends it. Only replies go to stdout: whatever a
library prints is sent to stderr.
"""
import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable


def claim_stdout():
    """Keep the real stdout for replies and point fd 1 (and sys.stdout) at stderr; call before any import."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return reply


def serve(reply, handlers: dict[str, Callable[..., dict]], info: dict) -> None:
    reply.write(json.dumps({"ready": True, **info}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            break
        try:
            result = {"ok": True, **handlers[op](**request)}
        except Exception as e:  # report, keep serving: one failed workload must not end the peer
            traceback.print_exc()
            result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        reply.write(json.dumps(result) + "\n")


class StreamTimer:
    """TTFT and decode rate of one generation, fed the time of each produced token."""

    def __init__(self):
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last = self.start
        self.num_tokens = 0

    def token(self, count: int = 1) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.num_tokens += count

    def result(self, **extra) -> dict:
        decode_s = self.last - (self.first or self.last)
        decode = (self.num_tokens - 1) / decode_s if decode_s > 0 else None
        return {"ttft_s": (self.first or self.last) - self.start, "decode_tok_s": decode,
                "new_tokens": self.num_tokens, **extra}


def prefill_result(num_prompt_tokens: int, seconds: float, **extra) -> dict:
    return {"prefill_s": seconds, "prefill_tok_s": num_prompt_tokens / seconds, "prompt_tokens": num_prompt_tokens,
            **extra}


WORKLOADS = ("w1", "w2", "greedy", "top1")


def runner_args(source_flag: str = "--model", threads: bool = True) -> argparse.Namespace:
    """Every runner's command line: what to load, and (where it can be set) the compute threads."""
    parser = argparse.ArgumentParser()
    parser.add_argument(source_flag, required=True)
    if threads:
        parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def serve_runner(reply, runner, info: dict) -> None:
    """Serve every workload `runner` implements, as methods named after them."""
    serve(reply, {op: getattr(runner, op) for op in WORKLOADS if hasattr(runner, op)}, info)


def teacher_forced_top1(prompts: list[list[int]], continuations: list[list[int]], begin) -> dict:
    """Argmax after each prompt and after each continuation token fed in turn.

    begin(prompt) -> (argmax after the prompt, step), step(token) -> argmax after feeding that token.
    """
    rows = []
    for prompt, continuation in zip(prompts, continuations):
        first, step = begin(prompt)
        rows.append([first, *(step(token) for token in continuation[:-1])])
    return {"top1": rows}

"""Serving benchmark over HTTP; prints one JSON line and writes it to bench/results/serve-<date>.json.

W1  one greedy chat stream of 128 new tokens (EOS ignored): time to first token, decode tok/s after it
W2  a ~512-token prompt with max_tokens 1: prefill tok/s = prompt tokens / time to the full response
W3  8 concurrent W1 streams: aggregate tok/s, p50 latency (and p50 time to first token)

Each workload runs 1 warm-up + 3 measured repeats (see --warmup/--repeats); figures are medians.
Starts `mistralrs serve` (--artifact DIR, -m CHECKPOINT, or the bundled default model) unless --base-url is given,
with prefix sharing off: the repeats send the same prompts, which would otherwise time cache hits.

    .venv/bin/python bench/serve.py --artifact /path/to/artifact
"""
import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
STORY = [{"role": "user", "content": "Write a story about Rust error handling."}]
FILLER = "The quick brown fox jumps over the lazy dog near the quiet river bank. "
HEALTH_DEADLINE_S = 600  # includes compiling the default model into the cache on a first run


@dataclass(slots=True)
class StreamRun:
    ttft_s: float  # request sent -> first content chunk
    latency_s: float  # request sent -> stream closed
    tokens: int

    @property
    def decode_tok_s(self) -> float:
        return (self.tokens - 1) / (self.latency_s - self.ttft_s)


# -- the server -------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _source_args(args) -> list[str]:
    if args.artifact:
        return ["--artifact", args.artifact]
    if args.model:
        return ["-m", args.model] + (["--isq", args.isq] if args.isq else [])
    return []  # the bundled default model, Q4K, compiled into the cache once


def start_server(args, log) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    mistralrs = Path(sys.executable).with_name("mistralrs")
    command = [str(mistralrs), "serve", *_source_args(args), "--host", "127.0.0.1", "--port", str(port),
               "--threads", str(args.threads), "--max-batch", str(args.max_batch),
               "--max-seq-len", str(args.max_seq_len), "--http-threads", "64", "--no-prefix-sharing"]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + HEALTH_DEADLINE_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return server, base_url
        except httpx.TransportError:
            time.sleep(0.5)
    raise TimeoutError("the server did not answer /health")


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# -- requests ---------------------------------------------------------------------------------------------------
def stream_story(http: httpx.Client, base_url: str, new_tokens: int) -> StreamRun:
    body = {"model": "default", "messages": STORY, "temperature": 0, "max_tokens": new_tokens, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    started, first, usage = time.perf_counter(), None, None
    with http.stream("POST", f"{base_url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter()
            usage = chunk.get("usage") or usage
    ended = time.perf_counter()
    return StreamRun(first - started, ended - started, usage["completion_tokens"])


def complete_once(http: httpx.Client, base_url: str, prompt: str) -> tuple[int, float]:
    """(prompt tokens, seconds) for a non-streamed chat answer of one token."""
    body = {"model": "default", "messages": [{"role": "user", "content": prompt}], "max_tokens": 1, "temperature": 0}
    started = time.perf_counter()
    response = http.post(f"{base_url}/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return response.json()["usage"]["prompt_tokens"], elapsed


def prompt_of(http: httpx.Client, base_url: str, target_tokens: int) -> str:
    """FILLER repeated to at most `target_tokens` prompt tokens (chat template included); measured, not guessed."""
    one, _ = complete_once(http, base_url, FILLER)
    eleven, _ = complete_once(http, base_url, FILLER * 11)
    per_filler = (eleven - one) / 10
    return FILLER * int(1 + (target_tokens - one) // per_filler)


# -- workloads --------------------------------------------------------------------------------------------------
def repeat(run, warmup: int, repeats: int) -> list:
    for _ in range(warmup):
        run()
    return [run() for _ in range(repeats)]


def w1(http, base_url, args) -> dict:
    runs = repeat(lambda: stream_story(http, base_url, args.new_tokens), args.warmup, args.repeats)
    return {"new_tokens": args.new_tokens, "ttft_s": _median(r.ttft_s for r in runs),
            "decode_tok_s": _median(r.decode_tok_s for r in runs),
            "runs": [{**asdict(r), "decode_tok_s": r.decode_tok_s} for r in runs]}


def w2(http, base_url, args) -> dict:
    prompt = prompt_of(http, base_url, args.prompt_tokens)
    runs = repeat(lambda: complete_once(http, base_url, prompt), args.warmup, args.repeats)
    return {"prompt_tokens": runs[0][0], "time_s": _median(s for _, s in runs),
            "prefill_tok_s": _median(n / s for n, s in runs),
            "runs": [{"prompt_tokens": n, "time_s": s} for n, s in runs]}


def concurrent_streams(base_url: str, args) -> dict:
    start = threading.Barrier(args.concurrency)

    def one(_):
        with httpx.Client(timeout=None) as http:
            start.wait()
            return stream_story(http, base_url, args.new_tokens)

    began = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        runs = list(pool.map(one, range(args.concurrency)))
    wall = time.perf_counter() - began
    tokens = sum(r.tokens for r in runs)
    return {"wall_s": wall, "tokens": tokens, "aggregate_tok_s": tokens / wall,
            "p50_latency_s": statistics.median(r.latency_s for r in runs),
            "p50_ttft_s": statistics.median(r.ttft_s for r in runs)}


def w3(base_url, args) -> dict:
    runs = repeat(lambda: concurrent_streams(base_url, args), args.warmup, args.repeats)
    return {"concurrency": args.concurrency, "new_tokens": args.new_tokens,
            **{key: _median(r[key] for r in runs) for key in ("aggregate_tok_s", "p50_latency_s", "p50_ttft_s")},
            "runs": runs}


def _median(values) -> float:
    return round(statistics.median(values), 4)


# -- report -----------------------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "nproc": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}


def git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        return commit + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def engine_stats(base_url: str) -> dict:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    pairs = (line.split() for line in text.splitlines() if line and not line.startswith("#"))
    return {name.removeprefix("mistralrs_"): float(value) for name, value in pairs}


def artifact_backend(artifact: str | None) -> dict | None:
    """The backend block of the artifact's manifest (e.g. matmul_accuracy), when we know the artifact."""
    if artifact is None:
        return None
    backend = json.loads((Path(artifact) / "manifest.json").read_text())["backend"]
    return {key: value for key, value in backend.items() if key != "graph_files"}


def run_workloads(base_url: str, args) -> dict:
    with httpx.Client(timeout=None) as http:
        card = http.get(f"{base_url}/v1/models").json()["data"][1]
        model = {key: card.get(key) for key in ("id", "isq", "backend", "target")}
        return {"model": model, "artifact_backend": artifact_backend(args.artifact), "W1": w1(http, base_url, args),
                "W2": w2(http, base_url, args), "W3": w3(base_url, args), "engine": engine_stats(base_url)}


def write_result(result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"serve-{datetime.now().strftime('%Y-%m-%d')}"
    path, n = RESULTS / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = RESULTS / f"{stem}-{n}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--base-url", help="benchmark a running server instead of starting one")
    source.add_argument("--artifact", help="serve this compiled artifact")
    source.add_argument("-m", "--model", help="serve this checkpoint (compiled into the cache)")
    p.add_argument("--isq", help="with -m: ISQ type")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-seq-len", type=int, default=2048)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = {"bench": "serve", "date": datetime.now().astimezone().isoformat(timespec="seconds"),
              "git": git_commit(), "machine": machine(), "warmup": args.warmup, "repeats": args.repeats}
    server = None
    with tempfile.NamedTemporaryFile("w+", prefix="bench-serve-", suffix=".log") as log:
        try:
            if args.base_url:
                base_url = args.base_url.rstrip("/")
                result["server"] = {"base_url": base_url}
            else:
                server, base_url = start_server(args, log)
                result["server"] = {"source": _source_args(args) or "default model", "threads": args.threads,
                                    "max_batch": args.max_batch, "max_seq_len": args.max_seq_len}
            result.update(run_workloads(base_url, args))
        except BaseException:
            log.seek(0)
            print(log.read()[-10_000:], file=sys.stderr)
            raise
        finally:
            if server is not None:
                stop_server(server)
    result["machine"]["loadavg_end"] = os.getloadavg()
    line = json.dumps(result)
    print(line)
    if not args.no_write:
        print(f"written to {write_result(result)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

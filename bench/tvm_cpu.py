"""TVM against ONNX Runtime on this CPU: SmolLM2-135M-Instruct at the same ISQ levels, one run.

W1: decode 128 greedy tokens after a chat prompt (decode tok/s, prefill excluded; also time to first token).
W2: prefill of a 512-token prompt (tok/s).
Each configuration runs in its own long-lived worker process (its own thread pool, `--threads` threads) driven
through the runtime's ModelExecutor; the workloads alternate the configurations (A B A B ..) so machine noise hits
them alike. Figures are medians of the repeats after the warm-up. Artifacts are compiled once into --models.

    python bench/tvm_cpu.py [--isq Q4K Q8_0 F32] [--repeats 3]     (writes bench/results/tvm-cpu-<stamp>.json)
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from cpu import MAX_NEW, W1_MESSAGES, W2_TEXT, W2_TOKENS

BENCH = Path(__file__).resolve().parent
BACKENDS = ("onnxruntime", "tvm")
W1_TOKENS = MAX_NEW


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isq", nargs="+", default=["Q4K", "Q8_0", "F32"])
    parser.add_argument("--models", type=Path, default=BENCH.parent / "build" / "bench-tvm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# -- worker: one artifact, commands on stdin, one JSON line per command on stdout --------------------------------

def worker(artifact_dir: Path, threads: int) -> None:
    from mistralrs.runtime.artifact import open_artifact
    from mistralrs.runtime.executors import create_executor
    from mistralrs.runtime.tokenizer import Tokenizer

    artifact = open_artifact(artifact_dir)
    executor = create_executor(artifact, 1, W2_TOKENS + W1_TOKENS + 64, threads)
    tokenizer = Tokenizer.from_dir(artifact.tokenizer_dir)
    w1_prompt = tokenizer.encode(tokenizer.apply_chat_template(W1_MESSAGES), add_special_tokens=False)
    w2_prompt = (tokenizer.encode(W2_TEXT * 12, add_special_tokens=False))[:W2_TOKENS]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "w1":
            start = time.perf_counter()
            tokens = [int(executor.forward(0, np.array([w1_prompt]), np.array([0]))[0].argmax())]
            first = time.perf_counter()
            for step in range(W1_TOKENS - 1):
                row = executor.forward(0, np.array([[tokens[-1]]]), np.array([len(w1_prompt) + step]))[0]
                tokens.append(int(row.argmax()))
            done = time.perf_counter()
            result = {"ttft_s": first - start, "decode_tok_s": (W1_TOKENS - 1) / (done - first), "tokens": tokens}
        else:
            start = time.perf_counter()
            executor.forward(0, np.array([w2_prompt]), np.array([0]))
            result = {"prefill_tok_s": len(w2_prompt) / (time.perf_counter() - start)}
        print(json.dumps(result), flush=True)


class Worker:
    def __init__(self, artifact: Path, threads: int):
        command = [sys.executable, __file__, "--worker", str(artifact), "--threads", str(threads)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.process.stdout.readline())["ready"]

    def run(self, workload: str) -> dict:
        self.process.stdin.write(workload + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(60)


# -- driver --------------------------------------------------------------------------------------------------

def ensure_artifact(models: Path, backend: str, isq: str) -> tuple[Path, dict]:
    out = models / f"smollm2-{backend}-{isq}"
    if not (out / "manifest.json").is_file():
        from mistralrs.compiler.compile import CompileOptions, compile_checkpoint
        from mistralrs.default_model import default_model_path

        log(f"compiling {out.name}")
        compile_checkpoint(CompileOptions(model=str(default_model_path()), output=out, backend=backend,
                                          isq=None if isq == "F32" else isq, keep_source=False, progress=False))
    return out, json.loads((out / "manifest.json").read_text())


def measure(workers: dict[str, Worker], workload: str, warmup: int, repeats: int) -> dict[str, list[dict]]:
    results = {name: [] for name in workers}
    for round_ in range(warmup + repeats):
        for name, w in workers.items():  # A B A B ..
            result = w.run(workload)
            if round_ >= warmup:
                results[name].append(result)
    return results


def main() -> int:
    args = parse_args()
    if args.worker:
        worker(args.worker, args.threads)
        return 0
    artifacts = {f"{backend} {isq}": ensure_artifact(args.models, backend, isq)
                 for isq in args.isq for backend in BACKENDS}
    rows, load_before = {}, list(os.getloadavg())
    for isq in args.isq:
        names = [f"{backend} {isq}" for backend in BACKENDS]
        workers = {name: Worker(artifacts[name][0], args.threads) for name in names}
        try:
            w1 = measure(workers, "w1", args.warmup, args.repeats)
            w2 = measure(workers, "w2", args.warmup, args.repeats)
        finally:
            for w in workers.values():
                w.close()
        reference = w1[names[0]][0]["tokens"]
        for name in names:
            manifest = artifacts[name][1]
            rows[name] = {
                "w1_decode_tok_s": statistics.median(r["decode_tok_s"] for r in w1[name]),
                "w1_ttft_s": statistics.median(r["ttft_s"] for r in w1[name]),
                "w2_prefill_tok_s": statistics.median(r["prefill_tok_s"] for r in w2[name]),
                "w1_leading_tokens_equal_to_onnxruntime": _leading_equal(w1[name][0]["tokens"], reference),
                "artifact_mb": round(manifest["servable_bytes"] / 1e6, 1),
                "compile_seconds": manifest["compile_seconds"],
                "backend_details": manifest["backend"].get("details"),
            }
            log(f"{name}: {rows[name]['w1_decode_tok_s']:.1f} decode tok/s, {rows[name]['w2_prefill_tok_s']:.1f} "
                f"prefill tok/s")
    report = {"bench": "tvm-vs-onnxruntime-cpu", "model": "SmolLM2-135M-Instruct", "unix_time": int(time.time()),
              "machine": {"cpu_model": _cpu_model(), "logical_cpus": os.cpu_count(),
                          "python": platform.python_version()},
              "threads": args.threads, "warmup": args.warmup, "repeats": args.repeats,
              "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
              "rows": rows}
    path = BENCH / "results" / f"tvm-cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=1))
    print(table(rows, args.isq))
    log(f"wrote {path}")
    return 0


def _leading_equal(tokens: list[int], reference: list[int]) -> str:
    same = next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), len(reference))
    return f"{same}/{len(reference)}"


def table(rows: dict, levels: list[str]) -> str:
    lines = ["| ISQ | metric | onnxruntime | tvm | tvm / onnxruntime |", "| --- | --- | --- | --- | --- |"]
    for isq in levels:
        ort, tvm = rows[f"onnxruntime {isq}"], rows[f"tvm {isq}"]
        for key, label in (("w1_decode_tok_s", "W1 decode tok/s"), ("w1_ttft_s", "W1 TTFT s"),
                           ("w2_prefill_tok_s", "W2 prefill tok/s"), ("artifact_mb", "artifact MB"),
                           ("compile_seconds", "compile s")):
            lines.append(f"| {isq} | {label} | {ort[key]:.3g} | {tvm[key]:.3g} | {tvm[key] / ort[key]:.2f} |")
        lines.append(f"| {isq} | W1 greedy tokens equal to onnxruntime | | "
                     f"{tvm['w1_leading_tokens_equal_to_onnxruntime']} | |")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        return next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                    if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    sys.exit(main())

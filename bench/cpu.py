"""CPU benchmark against peer runtimes: ours (fp32, Q8_0, Q4K; Q4K with int8 activations and with native decode) vs
llama.cpp, onnxruntime-genai, mistral.rs and transformers, on SmolLM2-135M-Instruct (the bundled Q4_1 GGUF, or its fp32
HF conversion).

Run with the project venv after bench/peers/setup.sh:  python bench/cpu.py
Each configuration is a runner subprocess (bench/peers/run_*.py) in its own venv. Every workload alternates the
configurations (A B C .. A B C ..) in this one process tree, so machine noise hits them alike; figures are
medians of the repeats after the warm-up, reported with their ratio to ours (Q4K). Results JSON: bench/results/.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peers.client import Peer, PeerError, PeerSpec
from peers.servers import Server, ServerSpec, concurrent_chat

from mistralrs.default_model import default_model_path
from mistralrs.runtime.artifact import open_artifact
from mistralrs.runtime.tokenizer import Tokenizer

BENCH = Path(__file__).resolve().parent
BASELINE = "ours Q4K"
W1_MESSAGES = [{"role": "user", "content": "Write a story about Rust error handling."}]
MAX_NEW = 128
W2_TOKENS = 512
W2_TEXT = ("Rust groups errors into two major categories: recoverable and unrecoverable errors. For a recoverable "
           "error, such as a file not found error, we most likely just want to report the problem to the user and "
           "retry the operation. Unrecoverable errors are always symptoms of bugs, like trying to access a location "
           "beyond the end of an array, and so we want to immediately stop the program. ")
QUALITY_PROMPTS = [
    "What is the capital of France?",
    "Explain what a hash map is in two sentences.",
    "Write a haiku about the ocean.",
    "List three benefits of regular exercise.",
    "How do I reverse a list in Python?",
    "Summarize the plot of Romeo and Juliet.",
    "What causes the seasons on Earth?",
    "Give me a simple recipe for pancakes.",
]
QUALITY_STEPS = 64
W3_CONCURRENCY = 8
W3_OURS = ("Q4K", "Q4K int8-matmul", "Q4K native")  # our servers in W3, each compared with its own W1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench-python", default="/work/bench-venv/bin/python", help="the bench venv's python")
    parser.add_argument("--models", type=Path, default=Path("/work/bench-models"),
                        help="where setup.sh put the peers' models; our artifacts are compiled here too")
    parser.add_argument("--only", nargs="*", help="configuration names to run (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-w3", action="store_true")
    return parser.parse_args()


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# -- setup -----------------------------------------------------------------------------------------------------
# Our artifacts: name -> (--isq, --matmul-accuracy, --decode, weights). Beyond the three, Q4K with int8
# activations shows what `--matmul-accuracy int8` trades (speed vs agreement with fp32), and Q4K native its decode
# steps run by the compiled native tape (int8 activations too) instead of the ONNX graph.
OURS = {"Q4K": ("Q4K", "fp32", "onnxruntime", "int4"), "Q4K int8-matmul": ("Q4K", "int8", "onnxruntime", "int4"),
        "Q4K native": ("Q4K", "int8", "native", "int4"), "Q8_0": ("Q8_0", "fp32", "onnxruntime", "int8"),
        "F32": (None, "fp32", "onnxruntime", "fp32")}


def ensure_artifact(gguf: Path, name: str, models: Path) -> Path:
    isq, accuracy, decode, _ = OURS[name]
    out = models / f"ours-{name.replace(' ', '-')}"
    if not (out / "manifest.json").is_file():
        command = [sys.executable, "-m", "mistralrs.cli", "compile", "-m", str(gguf), "-o", str(out), "-q",
                   "--no-spot-check", "--matmul-accuracy", accuracy, "--decode", decode]
        subprocess.run(command + (["--isq", isq] if isq else []), check=True)
    return out


def peer_specs(args: argparse.Namespace, gguf: Path, artifacts: dict[str, Path]) -> list[PeerSpec]:
    bench, threads, models = args.bench_python, str(args.threads), args.models
    ours = [PeerSpec(f"ours {name}", sys.executable, "run_ours.py",
                     ["--artifact", str(artifacts[name]), "--threads", threads], OURS[name][3]) for name in OURS]
    peers = [
        PeerSpec("llama.cpp Q4_1", bench, "run_llama_cpp.py", ["--model", str(gguf), "--threads", threads], "int4"),
        PeerSpec("ort-genai int4 k_quant", bench, "run_ort_genai.py",
                 ["--model", str(models / "ort-int4-kquant"), "--threads", threads], "int4"),
        PeerSpec("ort-genai fp32", bench, "run_ort_genai.py",
                 ["--model", str(models / "ort-fp32"), "--threads", threads], "fp32"),
        PeerSpec("mistral.rs Q4_1", bench, "run_mistralrs.py", ["--model", str(gguf)], "int4"),
        # Not the workload's 2 threads: on a busy machine its 2 rayon threads ran slower than 1 (2x at load ~5).
        PeerSpec("mistral.rs Q4_1, 1 thread", bench, "run_mistralrs.py", ["--model", str(gguf)], "int4",
                 env={"RAYON_NUM_THREADS": "1"}, measure_quality=False),
        PeerSpec("transformers fp32", bench, "run_transformers.py",
                 ["--model", str(models / "smollm2-hf"), "--threads", threads], "fp32"),
    ]
    chosen = ours + peers
    return [s for s in chosen if not args.only or s.name in args.only or s.name == BASELINE]


def chat_ids(tokenizer: Tokenizer, messages: list[dict]) -> list[int]:
    """Token ids exactly as our server builds them (api/chat.py)."""
    return tokenizer.encode(tokenizer.apply_chat_template(messages), add_special_tokens=False)


def workload_inputs(tokenizer: Tokenizer) -> dict:
    w2 = tokenizer.encode(W2_TEXT * 8, add_special_tokens=False)[:W2_TOKENS]
    assert len(w2) == W2_TOKENS
    return {"w1": {"messages": W1_MESSAGES, "prompt_ids": chat_ids(tokenizer, W1_MESSAGES), "max_new": MAX_NEW},
            "w2": {"prompt_ids": w2},
            "quality": [chat_ids(tokenizer, [{"role": "user", "content": p}]) for p in QUALITY_PROMPTS]}


def machine_info() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    first = dict(line.split(":", 1) for line in cpuinfo.split("\n\n")[0].splitlines() if ":" in line)
    first = {k.strip(): v.strip() for k, v in first.items()}
    meminfo = Path("/proc/meminfo").read_text().splitlines()[0].split()
    return {"cpu_model": first.get("model name"), "cpu_flags": first.get("flags", "").split(),
            "logical_cpus": os.cpu_count(), "mem_total_gb": round(int(meminfo[1]) / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(), "git": git_state(),
            "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}}


def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=BENCH, capture_output=True, text=True).stdout.strip()
    return {"head": git("rev-parse", "HEAD"), "dirty_files": git("status", "--porcelain").splitlines()}


# -- measuring -------------------------------------------------------------------------------------------------
def start_peers(specs: list[PeerSpec], threads: int, log_dir: Path, failures: dict) -> list[Peer]:
    peers = []
    for spec in specs:
        log(f"starting {spec.name}")
        try:
            peers.append(Peer(spec, threads, log_dir))
        except (PeerError, OSError) as e:
            failures[spec.name] = f"start: {e}"
    return peers


def alternate(peers: list[Peer], op: str, payload: dict, rounds: int, warmup: int, failures: dict) -> dict:
    """Round-robin `op` over the peers; returns {name: [result of each measured round]}."""
    samples: dict[str, list[dict]] = {p.spec.name: [] for p in peers}
    for round_index in range(rounds):
        for peer in peers:
            if peer.spec.name in failures:
                continue
            try:
                result = peer.request(op, **payload)
            except PeerError as e:
                failures[peer.spec.name] = f"{op}: {e}"
                continue
            if round_index >= warmup:
                samples[peer.spec.name].append(result)
        log(f"{op}: round {round_index + 1}/{rounds} done")
    return samples


def quality(peers: list[Peer], reference: Peer, prompts: list[list[int]], eos_ids: set[int], failures: dict) -> dict:
    """Teacher-forced top-1 agreement with our fp32 artifact's greedy continuations."""
    refs = reference.request("greedy", prompts=prompts, steps=QUALITY_STEPS)["tokens"]
    out = {}
    for peer in peers:
        if peer.spec.name in failures or not peer.spec.measure_quality:
            continue
        log(f"quality: {peer.spec.name}")
        try:
            reply = peer.request("top1", timeout_s=3600, prompts=prompts, continuations=refs)
        except PeerError as e:
            failures[peer.spec.name] = f"top1: {e}"
            continue
        agree = sum(p == r or (p is None and r in eos_ids)
                    for row, ref in zip(reply["top1"], refs) for p, r in zip(row, ref))
        out[peer.spec.name] = {"agree": agree, "total": len(prompts) * QUALITY_STEPS,
                               **{k: v for k, v in reply.items() if k not in ("ok", "top1")}}
    return out


def run_w3(args: argparse.Namespace, gguf: Path, artifacts: dict[str, Path], eos_ids: set[int], log_dir: Path,
           failures: dict) -> dict:
    specs = [ServerSpec(f"ours {name}", [sys.executable, "-m", "mistralrs.cli", "serve", "--artifact",
                                         str(artifacts[name]), "--host", "127.0.0.1", "--port", "{port}",
                                         "--threads", str(args.threads)]) for name in W3_OURS]
    specs.append(ServerSpec("llama.cpp Q4_1", [args.bench_python, "-m", "llama_cpp.server", "--model", str(gguf),
                                               "--host", "127.0.0.1", "--port", "{port}", "--n_threads",
                                               str(args.threads), "--n_threads_batch", str(args.threads),
                                               "--n_ctx", "4096"]))
    specs = [s for s in specs if not args.only or s.name in args.only]
    body = {"messages": W1_MESSAGES, "max_tokens": MAX_NEW, "temperature": 0,
            "logit_bias": {str(i): -100 for i in sorted(eos_ids)}}
    servers, samples = [], {}
    try:
        for spec in specs:
            try:
                servers.append(Server(spec, args.threads, log_dir))
            except (RuntimeError, OSError) as e:
                failures[f"{spec.name} (W3 server)"] = str(e)
        samples = {s.spec.name: [] for s in servers}
        for round_index in range(args.warmup + args.repeats):
            for server in servers:
                result = concurrent_chat(server, body, W3_CONCURRENCY)
                if round_index >= args.warmup:
                    samples[server.spec.name].append(result)
            log(f"w3: round {round_index + 1} done")
    finally:
        for server in servers:
            server.close()
    return samples


# -- reporting -------------------------------------------------------------------------------------------------
def median(samples: list[dict], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else None


def leading_match(tokens: list[int], reference: list[int]) -> str | None:
    """"k/n": how many of the first n greedy tokens equal the reference's."""
    if not tokens or not reference:
        return None
    n = min(len(tokens), len(reference))
    return f"{next((i for i in range(n) if tokens[i] != reference[i]), n)}/{n}"


def summarize(specs: list[PeerSpec], w1: dict, w2: dict, w3: dict, agreement: dict) -> dict[str, dict]:
    reference_tokens = (w1.get("ours F32") or [{}])[0].get("first_tokens", [])
    rows = {}
    for spec in specs:
        first = (w1.get(spec.name) or [{}])[0].get("first_tokens", [])
        rows[spec.name] = {
            "weights": spec.weights,
            "w1_ttft_s": median(w1.get(spec.name, []), "ttft_s"),
            "w1_decode_tok_s": median(w1.get(spec.name, []), "decode_tok_s"),
            "w2_prefill_tok_s": median(w2.get(spec.name, []), "prefill_tok_s"),
            "w3_aggregate_tok_s": median(w3.get(spec.name, []), "aggregate_tok_s"),
            "w3_p50_latency_s": median(w3.get(spec.name, []), "p50_latency_s"),
            "top1_agreement": agreement.get(spec.name),
            "w1_leading_tokens_equal_to_ours_fp32": leading_match(first, reference_tokens),
        }
    return rows


def cell(value: float | None, base: float | None, digits: int) -> str:
    if value is None:
        return "—"
    ratio = f" ({value / base:.2f}×)" if base else ""
    return f"{value:.{digits}f}{ratio}"


def markdown(rows: dict[str, dict]) -> str:
    base = rows.get(BASELINE, {})
    lines = ["| configuration | weights | W1 TTFT s | W1 decode tok/s | W2 prefill tok/s | W3 aggregate tok/s "
             "| W3 / own W1 decode | W3 p50 latency s | top-1 vs our fp32 | W1 greedy = our fp32 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        agreement = r["top1_agreement"]
        top1 = f"{agreement['agree'] / agreement['total']:.1%}" if agreement else "—"
        streams, single = r["w3_aggregate_tok_s"], r["w1_decode_tok_s"]
        streams_ratio = f"{streams / single:.2f}×" if streams and single else "—"
        lines.append(
            f"| {name} | {r['weights']} | {cell(r['w1_ttft_s'], base.get('w1_ttft_s'), 3)} "
            f"| {cell(r['w1_decode_tok_s'], base.get('w1_decode_tok_s'), 1)} "
            f"| {cell(r['w2_prefill_tok_s'], base.get('w2_prefill_tok_s'), 0)} "
            f"| {cell(r['w3_aggregate_tok_s'], base.get('w3_aggregate_tok_s'), 1)} | {streams_ratio} "
            f"| {cell(r['w3_p50_latency_s'], base.get('w3_p50_latency_s'), 2)} | {top1} "
            f"| {r['w1_leading_tokens_equal_to_ours_fp32'] or '—'} |")
    lines.append(f"\nRatios are to {BASELINE}: above 1 is faster for tok/s, slower for TTFT and latency.")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-cpu-{stamp}-"))  # runners' stderr, kept out of the repo
    log(f"runner logs: {log_dir}")
    gguf = default_model_path()
    artifacts = {name: ensure_artifact(gguf, name, args.models) for name in OURS}
    tokenizer = Tokenizer.from_dir(open_artifact(artifacts["F32"]).tokenizer_dir)
    inputs = workload_inputs(tokenizer)
    specs = peer_specs(args, gguf, artifacts)
    failures: dict[str, str] = {}
    load_before, machine = os.getloadavg(), machine_info()
    peers = start_peers(specs, args.threads, log_dir, failures)
    rounds = args.warmup + args.repeats
    try:
        w1 = alternate(peers, "w1", inputs["w1"], rounds, args.warmup, failures)
        w2 = alternate(peers, "w2", inputs["w2"], rounds, args.warmup, failures)
        reference = next((p for p in peers if p.spec.name == "ours F32"), None)
        agreement = {} if args.skip_quality or reference is None else quality(
            peers, reference, inputs["quality"], tokenizer.eos_token_ids, failures)
    finally:
        for peer in peers:
            peer.close()
    w3 = {} if args.skip_w3 else run_w3(args, gguf, artifacts, tokenizer.eos_token_ids, log_dir, failures)
    rows = summarize(specs, w1, w2, w3, agreement)
    table = markdown(rows)
    result = {"bench": "cpu-peers", "model": gguf.name, "unix_time": int(time.time()), "machine": machine,
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "threads": args.threads,
              "warmup": args.warmup, "repeats": args.repeats, "rows": rows, "failures": failures,
              "peers": {p.spec.name: p.info for p in peers},
              "inputs": {"w1_prompt_tokens": len(inputs["w1"]["prompt_ids"]), "w2_prompt_tokens": W2_TOKENS,
                         "quality_prompts": QUALITY_PROMPTS, "quality_steps": QUALITY_STEPS},
              "samples": {"w1": w1, "w2": w2, "w3": w3}, "logs": str(log_dir), "markdown": table}
    out = BENCH / "results" / f"cpu-{stamp}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(table)
    for name, reason in failures.items():
        print(f"- {name} failed: {reason}")
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()

"""GPU benchmark (run on the GPU machine): our inductor artifacts vs transformers eager on one GPU.

A random Llama-3.2-1B-shaped checkpoint (hidden 2048, 16 layers, 32 heads, 8 KV heads, vocab 128256, tied
embeddings, bf16) is generated there and compiled with `--backend inductor --target cuda:sm_NN` in bf16 and with
weight-only ISQ (`--isq Q4_1`: int4 tinygemm, `--isq Q8_0`: int8 per channel). Measured: decode tok/s at batch 1,
8, 32, 64 (128-token prompts, greedy, CUDA graphs), time to first token for 512 and 2048-token prompts, the same
for transformers eager, our batch-1 figure against the HBM roofline (bf16 weight bytes / measured copy bandwidth),
and the serving path: `mistralrs serve --artifact` answering the `openai` SDK (one chat, one stream).

Each stage runs in its own process (a crash spares the rest); results merge into <out>.json and <out>.md, so
stages can be spread over several device calls:

    CXX=/usr/bin/g++ python bench/gpu.py --out bench/results/gpu-<date> --stages bf16,transformers,serve
    CXX=/usr/bin/g++ python bench/gpu.py --out bench/results/gpu-<date> --stages Q4_1,Q8_0

(CXX: the GPU machine's default CXX, /opt/gcc/bin/g++, builds packages that segfault at load; the inductor
backend's toolchain check says so.) Parity is tested by `pytest -m gpu` (tests/compiler/test_inductor.py).
"""
import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mistralrs.compiler.compile import CompileOptions, compile_checkpoint
from mistralrs.runtime.artifact import open_artifact
from mistralrs.runtime.executors.inductor import InductorExecutor

BATCHES = (1, 8, 32, 64)
PROMPT_LEN = 128
DECODE_WARMUP, DECODE_STEPS = 4, 32
TTFT_PROMPTS = (512, 2048)
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True,
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192},
            "rope_theta": 500000.0, "bos_token_id": 0, "eos_token_id": 1}
ISQ_STAGES = {"bf16": None, "Q4_1": "Q4_1", "Q8_0": "Q8_0"}
ISQ_BATCHES = (1, 64)
CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}assistant"


def random_checkpoint(directory: Path, shape: dict, seed: int, std: float = 0.02, device: str = "cuda"):
    """A transformers Llama with N(0, std) weights (norms 1 + 0.1 N), saved as a bf16 HF directory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**shape)).to(torch.bfloat16).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(1 + 0.1 * torch.randn_like(param) if "norm" in name else std * torch.randn_like(param))
    model.save_pretrained(directory)
    _write_tokenizer(directory, shape["vocab_size"])
    return model


def _write_tokenizer(directory: Path, vocab_size: int) -> None:
    vocab = {f"t{i}": i for i in range(vocab_size)}
    tokenizer = {"version": "1.0", "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"},
                 "pre_tokenizer": {"type": "Whitespace"}, "added_tokens": [], "normalizer": None,
                 "post_processor": None, "decoder": None, "truncation": None, "padding": None}
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))
    (directory / "tokenizer_config.json").write_text(json.dumps({"bos_token": "t0", "eos_token": "t1",
                                                                 "chat_template": CHAT_TEMPLATE}))


def compile_artifact(checkpoint: Path, output: Path, isq: str | None) -> dict:
    major, minor = torch.cuda.get_device_capability()
    start = time.perf_counter()
    manifest = compile_checkpoint(CompileOptions(model=str(checkpoint), output=output, backend="inductor", isq=isq,
                                                 target=f"cuda:sm_{major}{minor}", keep_source=False, progress=False))
    size = sum(f.stat().st_size for f in output.iterdir() if f.is_file())
    return {"seconds": round(time.perf_counter() - start, 1), "bytes": size, "backend": manifest["backend"]}


# --- ours ---------------------------------------------------------------------------------------------------------

def executor(artifact: Path, max_slots: int, max_seq_len: int) -> InductorExecutor:
    return InductorExecutor(open_artifact(artifact), max_slots, max_seq_len, 1)


def ours_decode(artifact: Path, batches=BATCHES) -> dict:
    """tok/s per batch: device-side greedy loop (forward_tensor + argmax on the GPU), and through the
    ModelExecutor interface (logits copied to the host each step)."""
    model = executor(artifact, max(batches), PROMPT_LEN + 2 * (DECODE_WARMUP + DECODE_STEPS) + 8)
    vocab = LLAMA_1B["vocab_size"]
    results = {}
    for batch in batches:
        prompts = torch.randint(2, vocab, (batch, PROMPT_LEN))
        for slot in range(batch):
            model.forward_tensor(slot, prompts[slot:slot + 1], torch.tensor([0]))
        past = torch.full((batch,), PROMPT_LEN)
        ids = torch.randint(2, vocab, (batch, 1), device="cuda")
        device_side = _decode_rate(lambda ids: model.forward_tensor(0, ids, past).argmax(-1, keepdim=True), ids, past)
        host_ids = ids.cpu().numpy()
        via_host = _decode_rate(lambda ids: model.forward(0, ids, past.numpy()).argmax(-1)[:, None], host_ids, past)
        results[batch] = {"tok_s": round(batch * device_side, 1), "tok_s_host_logits": round(batch * via_host, 1)}
        print(f"ours {artifact.name} batch {batch}: {results[batch]}", flush=True)
    return results


def _decode_rate(step, ids, past: torch.Tensor) -> float:
    """Steps per second over DECODE_STEPS greedy steps after DECODE_WARMUP; advances `past` in place."""
    for _ in range(DECODE_WARMUP):
        ids = step(ids)
        past += 1
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(DECODE_STEPS):
        ids = step(ids)
        past += 1
    torch.cuda.synchronize()
    return DECODE_STEPS / (time.perf_counter() - start)


def ours_ttft(artifact: Path) -> dict:
    model = executor(artifact, 1, max(TTFT_PROMPTS) + 8)
    vocab = LLAMA_1B["vocab_size"]
    results = {}
    for length in TTFT_PROMPTS:
        ids = torch.randint(2, vocab, (1, length))
        results[length] = _median_ms(lambda: int(model.forward_tensor(0, ids, torch.tensor([0])).argmax()))
    return results


# --- transformers eager -------------------------------------------------------------------------------------------

def hf_decode(model, batches=BATCHES, steps: int = 16) -> dict:
    from transformers import DynamicCache

    vocab, results = model.config.vocab_size, {}
    with torch.no_grad():
        for batch in batches:
            ids = torch.randint(2, vocab, (batch, PROMPT_LEN), device="cuda")
            cache = DynamicCache()
            out = model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(2):
                nxt = model(nxt, past_key_values=cache, use_cache=True).logits[:, -1].argmax(-1, keepdim=True)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                nxt = model(nxt, past_key_values=cache, use_cache=True).logits[:, -1].argmax(-1, keepdim=True)
            torch.cuda.synchronize()
            results[batch] = {"tok_s": round(batch * steps / (time.perf_counter() - start), 1)}
            print(f"transformers batch {batch}: {results[batch]}", flush=True)
            del cache
    return results


def hf_ttft(model) -> dict:
    results = {}
    with torch.no_grad():
        for length in TTFT_PROMPTS:
            ids = torch.randint(2, model.config.vocab_size, (1, length), device="cuda")
            results[length] = _median_ms(lambda: int(model(ids, use_cache=True, logits_to_keep=1).logits[0, -1].argmax()))
    return results


# --- roofline -----------------------------------------------------------------------------------------------

def copy_bandwidth(num_bytes: int = 2 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s (bytes read + bytes written)."""
    src = torch.empty(num_bytes // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    seconds = _median_ms(lambda: dst.copy_(src), repeats=20) / 1e3
    return 2 * num_bytes / seconds


def _median_ms(fn, repeats: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 3)


# --- serving: mistralrs serve --artifact + the openai SDK ------------------------------------------------------------

def _metric(port: int, name: str) -> float | None:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return next((float(line.split()[1]) for line in lines if line.startswith(name + " ")), None)


def serve_check(artifact: Path, port: int = 18080) -> dict:
    import subprocess
    import sys

    from openai import OpenAI

    command = [sys.executable, "-m", "mistralrs.cli", "serve", "--artifact", str(artifact), "--host", "127.0.0.1",
               "--port", str(port), "--max-batch", "4", "--max-seq-len", "512"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=120)
        ready = _wait_ready(client, server)
        messages = [{"role": "user", "content": "Say something about GPUs."}]
        chat = client.chat.completions.create(model="default", messages=messages, max_tokens=24, temperature=0)
        chunks = client.chat.completions.create(model="default", messages=messages, max_tokens=24, temperature=0,
                                                stream=True, stream_options={"include_usage": True})
        pieces, usage = [], None
        for chunk in chunks:
            pieces += [c.delta.content or "" for c in chunk.choices]
            usage = chunk.usage or usage
        return {"startup_s": ready, "models": [m.id for m in client.models.list().data],
                "chat": chat.model_dump(), "stream_text": "".join(pieces), "stream_usage": usage and usage.model_dump(),
                "stream_equals_chat": "".join(pieces) == chat.choices[0].message.content,
                "prefix_shared_tokens": _metric(port, "mistralrs_prefix_shared_tokens")}  # the stream reused the chat's
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[0]
        print(log[-3000:], flush=True)


def _wait_ready(client, server, timeout_s: float = 300) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}")
        try:
            client.models.list()
            return round(time.perf_counter() - start, 1)
        except Exception:
            time.sleep(1)
    raise TimeoutError("server did not answer")


# --- stages: each in its own process ---------------------------------------------------------------------------------

def stage(name: str, work: Path) -> dict:
    checkpoint = work / "llama-1b"
    if not (checkpoint / "config.json").exists():
        random_checkpoint(checkpoint, LLAMA_1B, seed=0)
    if name == "transformers":
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM.from_pretrained(checkpoint, dtype=torch.bfloat16).cuda().eval()
        return {"transformers": {"decode": hf_decode(model), "ttft_ms": hf_ttft(model)}}
    if name == "serve":
        return {"serve": serve_check(work / "art-bf16")}
    artifact = work / f"art-{name}"
    result = {"compile": compile_artifact(checkpoint, artifact, ISQ_STAGES[name])}
    if name == "bf16":
        result |= {"decode": ours_decode(artifact), "ttft_ms": ours_ttft(artifact),
                   "weight_bytes": (checkpoint / "model.safetensors").stat().st_size}
    else:
        result["decode"] = ours_decode(artifact, ISQ_BATCHES)
    return {"ours": {name: result}}


def run_stages(names: list[str], report: dict, work: Path, out: Path) -> None:
    import subprocess
    import sys

    for name in names:
        result_file = work / f"{name}.json"
        start = time.perf_counter()
        command = [sys.executable, "-X", "faulthandler", __file__, "--stage", name, "--work", str(work),
                   "--result", str(result_file)]
        returncode = subprocess.run(command).returncode
        report["stages"][name] = {"rc": returncode, "seconds": round(time.perf_counter() - start, 1)}
        if returncode == 0:
            _merge(report, json.loads(result_file.read_text()))
            report["errors"].pop(name, None)
        else:
            report["errors"][name] = f"exit status {returncode}"
        _finish(report, out)


def _merge(report: dict, result: dict) -> None:
    for key, value in result.items():
        if isinstance(value, dict) and isinstance(report.get(key), dict):
            report[key] |= value
        else:
            report[key] = value


def _finish(report: dict, out: Path) -> None:
    bf16 = report.get("ours", {}).get("bf16")
    if bf16:
        bandwidth = report["copy_bandwidth_bytes_s"]
        roofline = bandwidth / bf16["weight_bytes"]
        report["roofline"] = {"weight_bytes": bf16["weight_bytes"], "copy_bandwidth_bytes_s": bandwidth,
                              "roofline_tok_s": roofline, "fraction_batch1": bf16["decode"]["1"]["tok_s"] / roofline}
    _write(out.with_suffix(".json"), report)
    out.with_suffix(".md").write_text(markdown(report))


def markdown(report: dict) -> str:
    ours, hf = report.get("ours", {}), report.get("transformers", {})
    bf16 = ours.get("bf16", {})
    lines = [f"# GPU benchmark: {report['device']}", "",
             f"torch {report['torch']}, CUDA {report['cuda']}, Triton {report.get('triton')}; random "
             f"Llama-3.2-1B-shaped checkpoint; decode after {PROMPT_LEN}-token prompts, {DECODE_STEPS} timed greedy "
             "steps, CUDA graphs. \"device loop\": argmax stays on the GPU; \"to host\": fp32 logits copied out "
             "each step (the ModelExecutor interface the engine uses).", "",
             "| metric | ours bf16, device loop | ours bf16, to host | int4 (Q4_1) | int8 (Q8_0) | transformers eager "
             "| ours bf16 / transformers |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for batch in BATCHES:
        o, h = bf16.get("decode", {}).get(str(batch), {}), hf.get("decode", {}).get(str(batch), {})
        quantized = [ours.get(k, {}).get("decode", {}).get(str(batch), {}).get("tok_s", "-") for k in ("Q4_1", "Q8_0")]
        ratio = f"{o['tok_s'] / h['tok_s']:.1f}x" if o and h else "-"
        lines.append(f"| decode tok/s, batch {batch} | {o.get('tok_s', '-')} | {o.get('tok_s_host_logits', '-')} | "
                     f"{quantized[0]} | {quantized[1]} | {h.get('tok_s', '-')} | {ratio} |")
    for length in TTFT_PROMPTS:
        o, h = bf16.get("ttft_ms", {}).get(str(length)), hf.get("ttft_ms", {}).get(str(length))
        ratio = f"{h / o:.1f}x faster" if o and h else "-"
        lines.append(f"| TTFT ms, {length}-token prompt | {o or '-'} | | | | {h or '-'} | {ratio} |")
    roof = report.get("roofline")
    if roof:
        lines += ["", f"Roofline: {roof['weight_bytes'] / 1e9:.3f} GB of bf16 weights, measured copy bandwidth "
                      f"{roof['copy_bandwidth_bytes_s'] / 1e12:.2f} TB/s -> {roof['roofline_tok_s']:.0f} tok/s at "
                      f"batch 1; ours bf16 reaches {roof['fraction_batch1']:.0%}."]
    compiles = {k: v["compile"] for k, v in ours.items() if "compile" in v}
    if compiles:
        lines += ["", "Compile (on the GPU machine): " + "; ".join(
            f"{k} {c['seconds']} s, {c['bytes'] / 1e9:.2f} GB" for k, c in compiles.items())]
    if "serve" in report:
        s = report["serve"]
        lines += ["", f"Serving (`mistralrs serve --artifact`, openai SDK): ready in {s['startup_s']} s, models "
                      f"{s['models']}, chat answered {s['chat']['usage']['completion_tokens']} tokens "
                      f"(finish_reason {s['chat']['choices'][0]['finish_reason']}), stream equals chat: "
                      f"{s['stream_equals_chat']} (prompt positions taken from the cache: "
                      f"{s.get('prefix_shared_tokens')})."]
    if report.get("errors"):
        lines += ["", "Errors:"] + [f"- {name}: {text}" for name, text in report["errors"].items()]
    return "\n".join(lines) + "\n"


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="path prefix of the .json and .md results (merged into if they exist)")
    parser.add_argument("--stages", default="bf16,transformers,serve,Q4_1,Q8_0",
                        help="comma-separated: bf16, Q4_1, Q8_0 (compile + measure), transformers, serve")
    parser.add_argument("--work", default="/tmp/mistralrs-gpu-bench", help="scratch directory, reused across calls")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.stage:
        _write(Path(args.result), stage(args.stage, work))
        return 0
    import triton

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = out.with_suffix(".json")
    report = json.loads(previous.read_text()) if previous.exists() else {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "triton": triton.__version__, "copy_bandwidth_bytes_s": copy_bandwidth(), "errors": {}, "stages": {}}
    run_stages(args.stages.split(","), report, work, out)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

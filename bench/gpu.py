"""GPU benchmark (run on the GPU machine): our inductor artifact vs transformers eager, one GPU, one process.

A random Llama-3.2-1B-shaped checkpoint (hidden 2048, 16 layers, 32 heads, 8 KV heads, vocab 128256, tied
embeddings, bf16) is generated here, compiled with `--backend inductor --target cuda:sm_NN`, and measured:
decode tok/s at batch 1, 8, 32, 64 (128-token prompts, greedy, CUDA graphs) and time to first token for 512 and
2048-token prompts, for ours and for transformers eager; plus our batch-1 figure against the HBM roofline
(weight bytes / measured device copy bandwidth) and a bf16 greedy parity check on a tiny random checkpoint.

    python bench/gpu.py --out bench/results/gpu-<date>      (writes <out>.json and <out>.md)
"""
import argparse
import json
import logging
import statistics
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from mistralrs.compiler.compile import CompileOptions, compile_checkpoint
from mistralrs.runtime.artifact import open_artifact
from mistralrs.runtime.executors.inductor import InductorExecutor

VARIANTS = {"graphs": {"use_cuda_graphs": True}, "plain": {"use_cuda_graphs": False}}
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
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 300, "tie_word_embeddings": True,
        "max_position_embeddings": 256, "bos_token_id": 0, "eos_token_id": 1}


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
    (directory / "tokenizer_config.json").write_text(json.dumps({"bos_token": "t0", "eos_token": "t1"}))


def compile_artifact(checkpoint: Path, output: Path) -> tuple[dict, float]:
    major, minor = torch.cuda.get_device_capability()
    start = time.perf_counter()
    manifest = compile_checkpoint(CompileOptions(model=str(checkpoint), output=output, backend="inductor",
                                                 target=f"cuda:sm_{major}{minor}", keep_source=False, progress=False))
    return manifest, time.perf_counter() - start


# --- ours ---------------------------------------------------------------------------------------------------------

def executor(artifact: Path, max_slots: int, max_seq_len: int, variant: str) -> InductorExecutor:
    return InductorExecutor(open_artifact(artifact, verify=False), max_slots, max_seq_len, 1, **VARIANTS[variant])


def ours_decode(artifact: Path, variant: str, batches=BATCHES) -> dict:
    """tok/s per batch: device-side greedy loop (forward_tensor + argmax on the GPU), and through the
    ModelExecutor interface (logits copied to the host each step)."""
    model = executor(artifact, max(batches), PROMPT_LEN + 2 * (DECODE_WARMUP + DECODE_STEPS) + 8, variant)
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
        print(f"ours ({variant}) batch {batch}: {results[batch]}", flush=True)
    return {"decode": results}


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


def ours_ttft(artifact: Path, variant: str) -> dict:
    model = executor(artifact, 1, max(TTFT_PROMPTS) + 8, variant)
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


# --- roofline, parity -----------------------------------------------------------------------------------------------

def copy_bandwidth(num_bytes: int = 2 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s (bytes read + bytes written)."""
    src = torch.empty(num_bytes // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    seconds = _median_ms(lambda: dst.copy_(src), repeats=20) / 1e3
    return 2 * num_bytes / seconds


def parity(work: Path, variant: str, steps: int = 32) -> dict:
    """bf16 greedy tokens of the compiled tiny model (work/tiny-art) vs the same cached decoder run eagerly."""
    from mistralrs.compiler.loaders import load_checkpoint
    from mistralrs.model_zoo.cached_decoder import CachedDecoder
    from mistralrs.model_zoo.config import DecoderConfig
    from mistralrs.model_zoo.decoder import DecoderLM

    prompt = list(range(5, 21))
    compiled_model = executor(work / "tiny-art", 1, 64, variant)
    compiled = [int(compiled_model.forward(0, np.array([prompt]), np.array([0]))[0].argmax())]
    for step in range(steps):
        rows = compiled_model.forward(0, np.array([[compiled[-1]]]), np.array([len(prompt) + step]))
        compiled.append(int(rows[0].argmax()))
    loaded = load_checkpoint(work / "tiny-hf")
    lm = DecoderLM.from_tensors(DecoderConfig.from_hf(loaded.config), loaded.load_tensor, loaded.tensor_names())
    model = CachedDecoder(lm.to("cuda", torch.bfloat16)).eval()
    cfg = model.cfg
    cache = [torch.zeros(1, cfg.num_layers, cfg.num_kv_heads, 64, cfg.head_dim, dtype=torch.bfloat16, device="cuda")
             for _ in range(2)]
    eager, ids = [], torch.tensor([prompt], device="cuda")
    with torch.no_grad():
        for step in range(steps + 1):
            past = torch.tensor([0 if step == 0 else len(prompt) + step - 1], device="cuda")
            eager.append(int(model(ids, past, *cache)[0].argmax()))
            ids = torch.tensor([[eager[-1]]], device="cuda")
    return {"steps": steps, "variant": variant, "identical": compiled == eager, "distinct_tokens": len(set(compiled)),
            "compiled": compiled, "eager": eager}


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


# --- report ---------------------------------------------------------------------------------------------------------

def markdown(report: dict) -> str:
    ours, hf = report.get("ours", {}), report.get("transformers", {})
    lines = [f"# GPU benchmark: {report['device']}", "",
             f"torch {report['torch']}, CUDA {report['cuda']}, Triton {report.get('triton')}; "
             f"random Llama-3.2-1B-shaped checkpoint, bf16; decode after {PROMPT_LEN}-token prompts, "
             f"{DECODE_STEPS} timed greedy steps; our executor variant: {ours.get('variant', '-')}.", "",
             "| metric | ours (inductor .pt2) | ours, logits to host | transformers eager | ours / transformers |",
             "| --- | --- | --- | --- | --- |"]
    for batch in BATCHES:
        o = ours.get("decode", {}).get(str(batch), {})
        h = hf.get("decode", {}).get(str(batch), {})
        ratio = f"{o['tok_s'] / h['tok_s']:.1f}x" if o and h else "-"
        lines.append(f"| decode tok/s, batch {batch} | {o.get('tok_s', '-')} | {o.get('tok_s_host_logits', '-')} | "
                     f"{h.get('tok_s', '-')} | {ratio} |")
    for length in TTFT_PROMPTS:
        o, h = ours.get("ttft_ms", {}).get(str(length)), hf.get("ttft_ms", {}).get(str(length))
        ratio = f"{h / o:.1f}x faster" if o and h else "-"
        lines.append(f"| TTFT ms, {length}-token prompt | {o or '-'} | | {h or '-'} | {ratio} |")
    roof = report.get("roofline")
    if roof:
        lines += ["", f"Roofline: {roof['weight_bytes'] / 1e9:.3f} GB of weights, measured copy bandwidth "
                      f"{roof['copy_bandwidth_bytes_s'] / 1e12:.2f} TB/s -> {roof['roofline_tok_s']:.0f} tok/s at "
                      f"batch 1; ours reaches {roof['fraction_batch1']:.0%}."]
    if "parity" in report:
        p = report["parity"]
        lines += ["", f"Parity (tiny random Llama, bf16, {p['steps']} greedy steps, compiled vs eager): "
                      f"identical={p['identical']} ({p['distinct_tokens']} distinct tokens)."]
    if report.get("errors"):
        lines += ["", "Errors:"] + [f"- {name}: {text.splitlines()[-1]}" for name, text in report["errors"].items()]
    return "\n".join(lines) + "\n"


# --- stages: each runs in its own process, so a crash in one (or in one executor variant) spares the rest ----------

def stage(name: str, work: Path, variant: str) -> dict:
    if name == "compile":
        random_checkpoint(work / "llama-1b", LLAMA_1B, seed=0)
        manifest, seconds = compile_artifact(work / "llama-1b", work / "llama-1b-art")
        return {"compile": {"seconds": round(seconds, 1), "backend": manifest["backend"]}}
    if name == "ours":
        decode = ours_decode(work / "llama-1b-art", variant)
        _write(work / "ours-partial.json", decode)
        weight_bytes = (work / "llama-1b" / "model.safetensors").stat().st_size  # bf16 tensors + a small header
        return {"ours": {"variant": variant, "decode": decode["decode"],
                         "ttft_ms": ours_ttft(work / "llama-1b-art", variant)}, "weight_bytes": weight_bytes}
    if name == "parity-compile":
        random_checkpoint(work / "tiny-hf", TINY, seed=1, std=0.08)
        compile_artifact(work / "tiny-hf", work / "tiny-art")
        return {}
    if name == "parity":
        return {"parity": parity(work, variant)}
    if name == "parity-inproc":  # compile and load in one process (a fresh process's .pt2 load segfaulted)
        random_checkpoint(work / "tiny-hf", TINY, seed=1, std=0.08)
        compile_artifact(work / "tiny-hf", work / "tiny-art")
        return {"parity": _first_working(lambda v: parity(work, v))}
    if name == "ours-inproc":
        random_checkpoint(work / "llama-1b", LLAMA_1B, seed=0)
        manifest, seconds = compile_artifact(work / "llama-1b", work / "llama-1b-art")
        _write(work / "compile.json", {"seconds": round(seconds, 1), "backend": manifest["backend"]})
        result = _first_working(lambda v: stage("ours", work, v))
        return result | {"compile": {"seconds": round(seconds, 1), "backend": manifest["backend"]}}
    if name == "ours-jit":
        return jit_fallback(work)
    if name == "transformers":
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM.from_pretrained(work / "llama-1b", dtype=torch.bfloat16).cuda().eval()
        return {"transformers": {"decode": hf_decode(model), "ttft_ms": hf_ttft(model)}}
    raise ValueError(f"unknown stage {name!r}")


PLAN = [("parity-inproc", [None]), ("ours-inproc", [None]), ("ours-jit", [None]), ("transformers", [None])]


def _first_working(run):
    for variant in VARIANTS:
        try:
            return run(variant)
        except Exception:
            traceback.print_exc()
    raise RuntimeError("no executor variant ran")


class JitExecutor:
    """Stand-in for InductorExecutor when .pt2 loading fails: the same CachedDecoder under torch.compile (JIT
    Inductor), the same slot-major cache and DecodeGraph. Not the artifact path; reported as such."""

    def __init__(self, checkpoint: Path, max_slots: int, max_seq_len: int):
        from mistralrs.compiler.loaders import load_checkpoint
        from mistralrs.model_zoo.cached_decoder import CachedDecoder
        from mistralrs.model_zoo.config import DecoderConfig
        from mistralrs.model_zoo.decoder import DecoderLM

        loaded = load_checkpoint(checkpoint)
        cfg = DecoderConfig.from_hf(loaded.config)
        lm = DecoderLM.from_tensors(cfg, loaded.load_tensor, loaded.tensor_names()).to("cuda", torch.bfloat16)
        model = CachedDecoder(lm).eval().requires_grad_(False)
        self.prefill = torch.compile(model, dynamic=True)
        self.decode = torch.compile(model, dynamic=True)
        shape = (max_slots, cfg.num_layers, cfg.num_kv_heads, max_seq_len, cfg.head_dim)
        self.k_cache = torch.zeros(shape, dtype=torch.bfloat16, device="cuda")
        self.v_cache = torch.zeros_like(self.k_cache)
        self.graphs = {}

    @torch.no_grad()
    def forward_tensor(self, first_slot: int, ids: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        from mistralrs.runtime.executors.inductor import DecodeGraph

        ids, past = ids.cuda(), past.cuda()
        window = slice(first_slot, first_slot + ids.shape[0])
        if ids.shape[1] > 1:
            return self.prefill(ids, past, self.k_cache[window], self.v_cache[window])
        key = (first_slot, ids.shape[0])
        if key not in self.graphs:
            self.graphs[key] = DecodeGraph(self.decode, self.k_cache[window], self.v_cache[window])
        return self.graphs[key].run(ids, past)

    def forward(self, first_slot, token_ids, past_lengths):
        return self.forward_tensor(first_slot, torch.from_numpy(np.asarray(token_ids, np.int64)),
                                   torch.from_numpy(np.asarray(past_lengths, np.int64))).cpu().numpy()


def jit_fallback(work: Path) -> dict:
    global executor
    checkpoint = work / "llama-1b"
    if not checkpoint.exists():
        random_checkpoint(checkpoint, LLAMA_1B, seed=0)
    executor = lambda artifact, slots, length, variant: JitExecutor(checkpoint, slots, length)  # noqa: E731
    decode = ours_decode(work / "unused", "jit")
    weight_bytes = (checkpoint / "model.safetensors").stat().st_size
    return {"ours": {"variant": "torch.compile JIT stand-in (AOTI .pt2 load failed)", "decode": decode["decode"],
                     "ttft_ms": ours_ttft(work / "unused", "jit")}, "weight_bytes": weight_bytes}


def orchestrate(out: Path, work: Path, deadline_s: float) -> dict:
    import subprocess
    import sys
    import triton

    start = time.perf_counter()
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "triton": triton.__version__, "copy_bandwidth_bytes_s": copy_bandwidth(), "errors": {}, "stages": {}}
    torch.cuda.empty_cache()
    for name, variants in PLAN:
        for variant in variants:
            label = name if variant is None else f"{name}:{variant}"
            if name == "ours-jit" and "ours" in report:
                continue
            if time.perf_counter() - start > deadline_s:
                report["errors"][label] = "skipped: out of time"
                continue
            result_file = work / f"{name}-{variant}.json"
            t0 = time.perf_counter()
            command = [sys.executable, "-X", "faulthandler", __file__, "--stage", name, "--work", str(work),
                       "--variant", variant or "graphs", "--result", str(result_file)]
            try:
                returncode = subprocess.run(command, timeout=max(30, deadline_s - (time.perf_counter() - start))).returncode
            except subprocess.TimeoutExpired:
                returncode = "timeout"
            report["stages"][label] = {"rc": returncode, "seconds": round(time.perf_counter() - t0, 1)}
            if returncode == 0:
                report.update(json.loads(result_file.read_text()))
                break
            report["errors"][label] = f"exit status {returncode}"
        _finish(report, out)
    return report


def _finish(report: dict, out: Path) -> None:
    if "ours" in report and "weight_bytes" in report:
        bandwidth = report["copy_bandwidth_bytes_s"]
        roofline = bandwidth / report["weight_bytes"]
        report["roofline"] = {"weight_bytes": report["weight_bytes"], "copy_bandwidth_bytes_s": bandwidth,
                              "roofline_tok_s": roofline,
                              "fraction_batch1": report["ours"]["decode"]["1"]["tok_s"] / roofline}
    _write(out.with_suffix(".json"), report)
    out.with_suffix(".md").write_text(markdown(report))


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="path prefix of the .json and .md results")
    parser.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--deadline", type=float, default=540, help="seconds after which no new stage starts")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="graphs", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.stage:
        _write(Path(args.result), json.loads(json.dumps(stage(args.stage, Path(args.work), args.variant))))
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        report = orchestrate(out, Path(args.work or tmp), args.deadline)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

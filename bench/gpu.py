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

VARIANTS = {"graphs": {"use_cuda_graphs": True, "share_weights": True},
            "plain": {"use_cuda_graphs": False, "share_weights": True},
            "copy": {"use_cuda_graphs": False, "share_weights": False}}
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
    vocab = model.weights["model.embed_tokens.weight"].shape[0]
    results = {}
    for batch in batches:
        prompts = torch.randint(2, vocab, (batch, PROMPT_LEN))
        for slot in range(batch):
            executor.forward_tensor(slot, prompts[slot:slot + 1], torch.tensor([0]))
        past = torch.full((batch,), PROMPT_LEN)
        ids = torch.randint(2, vocab, (batch, 1), device="cuda")
        for _ in range(DECODE_WARMUP):
            ids = executor.forward_tensor(0, ids, past).argmax(-1, keepdim=True)
            past += 1
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(DECODE_STEPS):
            ids = executor.forward_tensor(0, ids, past).argmax(-1, keepdim=True)
            past += 1
        torch.cuda.synchronize()
        device_side = batch * DECODE_STEPS / (time.perf_counter() - start)
        host_ids = ids.cpu().numpy()
        for _ in range(DECODE_WARMUP):
            host_ids = executor.forward(0, host_ids, past.numpy()).argmax(-1)[:, None]
            past += 1
        start = time.perf_counter()
        for _ in range(DECODE_STEPS):
            host_ids = executor.forward(0, host_ids, past.numpy()).argmax(-1)[:, None]
            past += 1
        via_host = batch * DECODE_STEPS / (time.perf_counter() - start)
        results[batch] = {"tok_s": round(device_side, 1), "tok_s_host_logits": round(via_host, 1)}
        print(f"ours batch {batch}: {results[batch]}", flush=True)
    weight_bytes = sum(t.numel() * t.element_size() for n, t in executor.weights.items() if not n.startswith("rope_"))
    del executor
    torch.cuda.empty_cache()
    return {"decode": results, "weight_bytes": weight_bytes}


def ours_ttft(artifact: Path, variant: str) -> dict:
    model = executor(artifact, 1, max(TTFT_PROMPTS) + 8, variant)
    vocab = model.weights["model.embed_tokens.weight"].shape[0]
    results = {}
    for length in TTFT_PROMPTS:
        ids = torch.randint(2, vocab, (1, length))

        def step():
            return int(executor.forward_tensor(0, ids, torch.tensor([0])).argmax())

        results[length] = _median_ms(step)
    del executor
    torch.cuda.empty_cache()
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


def parity(root: Path, steps: int = 32) -> dict:
    """bf16 greedy tokens of the compiled tiny model vs the same cached decoder run eagerly (32 steps)."""
    from mistralrs.compiler.loaders import load_checkpoint
    from mistralrs.model_zoo.cached_decoder import CachedDecoder
    from mistralrs.model_zoo.config import DecoderConfig
    from mistralrs.model_zoo.decoder import DecoderLM

    checkpoint_dir = root / "tiny-hf"
    random_checkpoint(checkpoint_dir, TINY, seed=1, std=0.08)
    compile_artifact(checkpoint_dir, root / "tiny-art")
    prompt = list(range(5, 21))
    executor = create_executor(open_artifact(root / "tiny-art"), 1, 64, threads=1)
    compiled = [int(executor.forward(0, np.array([prompt]), np.array([0]))[0].argmax())]
    for step in range(steps):
        compiled.append(int(executor.forward(0, np.array([[compiled[-1]]]), np.array([len(prompt) + step]))[0].argmax()))
    loaded = load_checkpoint(checkpoint_dir)
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
    return {"steps": steps, "identical": compiled == eager, "distinct_tokens": len(set(compiled)),
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
             f"{DECODE_STEPS} timed greedy steps.", "",
             "| metric | ours (inductor .pt2) | ours, logits to host | transformers eager | ours / transformers |",
             "| --- | --- | --- | --- | --- |"]
    for batch in BATCHES:
        o = ours.get("decode", {}).get(batch, {})
        h = hf.get("decode", {}).get(batch, {})
        ratio = f"{o['tok_s'] / h['tok_s']:.1f}x" if o and h else "-"
        lines.append(f"| decode tok/s, batch {batch} | {o.get('tok_s', '-')} | {o.get('tok_s_host_logits', '-')} | "
                     f"{h.get('tok_s', '-')} | {ratio} |")
    for length in TTFT_PROMPTS:
        o, h = ours.get("ttft_ms", {}).get(length), hf.get("ttft_ms", {}).get(length)
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="path prefix of the .json and .md results")
    parser.add_argument("--skip", action="append", default=[], help="parity, ours, transformers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import triton

    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "triton": triton.__version__, "errors": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
        out.with_suffix(".md").write_text(markdown(report))

    def attempt(name, fn):
        if name in args.skip:
            return
        try:
            fn()
        except Exception:
            report["errors"][name] = traceback.format_exc()
            print(report["errors"][name], flush=True)
        save()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        report["copy_bandwidth_bytes_s"] = copy_bandwidth()
        attempt("parity", lambda: report.update(parity=parity(root)))
        model = random_checkpoint(root / "llama-1b", LLAMA_1B, seed=0)

        def run_ours():
            manifest, seconds = compile_artifact(root / "llama-1b", root / "llama-1b-art")
            report["compile"] = {"seconds": round(seconds, 1), "backend": manifest["backend"]}
            save()
            decode = ours_decode(root / "llama-1b-art")
            bandwidth = report["copy_bandwidth_bytes_s"]
            roofline = bandwidth / decode["weight_bytes"]
            report["ours"] = {"decode": decode["decode"]}
            report["roofline"] = {"weight_bytes": decode["weight_bytes"], "copy_bandwidth_bytes_s": bandwidth,
                                  "roofline_tok_s": roofline,
                                  "fraction_batch1": decode["decode"][1]["tok_s"] / roofline}
            save()
            report["ours"]["ttft_ms"] = ours_ttft(root / "llama-1b-art")

        def run_hf():
            report["transformers"] = {"decode": hf_decode(model), "ttft_ms": hf_ttft(model)}

        attempt("ours", run_ours)
        attempt("transformers", run_hf)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

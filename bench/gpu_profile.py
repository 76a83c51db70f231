"""Where a decode step's GPU time goes (run on the GPU machine): the kernels of one inductor artifact's decode call.

Compiles the random Llama-3.2-1B-shaped checkpoint of bench/gpu.py (unless the artifact exists in --work), then
for each batch: the CUDA-graph step time, and under torch.profiler (no graph, so each kernel is visible) the
kernels of one step grouped by name with count and GPU time, and their sum against the graph's step time.

    CXX=/usr/bin/g++ python bench/gpu_profile.py --out bench/results/gpu-profile-<date>.json
"""
import argparse
import collections
import json
import time
from pathlib import Path

import torch

from gpu import DECODE_STEPS, LLAMA_1B, PROMPT_LEN, compile_artifact, executor, random_checkpoint

BATCHES = (1, 64)
TOP = 25


def profile(artifact: Path, batch: int) -> dict:
    model = executor(artifact, batch, PROMPT_LEN + DECODE_STEPS + 8)
    for slot in range(batch):
        model.forward_tensor(slot, torch.randint(2, LLAMA_1B["vocab_size"], (1, PROMPT_LEN)), torch.tensor([0]))
    past = torch.full((batch,), PROMPT_LEN)
    ids = torch.randint(2, LLAMA_1B["vocab_size"], (batch, 1))
    step_ms = _graph_step_ms(model, ids, past)
    model.use_cuda_graphs = False
    model.forward_tensor(0, ids, past)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        model.forward_tensor(0, ids, past)
        torch.cuda.synchronize()
    kernels = collections.defaultdict(lambda: [0, 0.0])
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels[event.name[:90]][0] += 1
            kernels[event.name[:90]][1] += event.device_time_total
    total_us = sum(t for _, t in kernels.values())
    top = sorted(kernels.items(), key=lambda item: -item[1][1])[:TOP]
    return {"graph_step_ms": step_ms, "kernel_count": sum(c for c, _ in kernels.values()),
            "kernel_time_ms": round(total_us / 1e3, 3),
            "top": [{"kernel": name, "count": count, "us": round(us, 1)} for name, (count, us) in top]}


def _graph_step_ms(model, ids, past, steps: int = 50) -> float:
    for _ in range(5):
        model.forward_tensor(0, ids, past)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        model.forward_tensor(0, ids, past)
    torch.cuda.synchronize()
    return round((time.perf_counter() - start) * 1e3 / steps, 4)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/mistralrs-gpu-bench")
    parser.add_argument("--isq", default=None)
    args = parser.parse_args()
    work = Path(args.work)
    checkpoint, artifact = work / "llama-1b", work / f"art-{args.isq or 'bf16'}"
    if not (checkpoint / "config.json").exists():
        random_checkpoint(checkpoint, LLAMA_1B, seed=0)
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "isq": args.isq}
    if not (artifact / "manifest.json").exists():
        report["compile"] = compile_artifact(checkpoint, artifact, args.isq)
    for batch in BATCHES:
        report[f"batch_{batch}"] = result = profile(artifact, batch)
        print(f"batch {batch}: graph step {result['graph_step_ms']} ms, {result['kernel_count']} kernels, "
              f"{result['kernel_time_ms']} ms of kernel time", flush=True)
        for row in result["top"]:
            print(f"  {row['count']:4d} {row['us']:9.1f} us  {row['kernel']}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

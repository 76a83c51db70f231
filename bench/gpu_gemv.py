"""Batch-1 matmul kernels on the GPU, one weight read each: cuBLAS and tinygemm against ops/gemv.py's kernel.

For each Llama-3.2-1B decode shape and weight format, the time of one y = x @ W.T for a single row, as GB/s of
weight bytes read (HBM bandwidth is the ceiling). Each kernel runs inside a CUDA graph of many launches that cycle
through enough weight copies (>= 512 MB) that no launch finds its weight in L2, as in a real decode step. The gemv
kernel is swept over block configurations; the best per shape is what ops/gemv.py's block_config should pick.

    python bench/gpu_gemv.py --out bench/results/gpu-gemv-<date>.json
"""
import argparse
import itertools
import json
from pathlib import Path

import torch
import triton

from mistralrs.ops import triton_gemv
from mistralrs.ops.gemv import DENSE, INT4, INT8
from mistralrs.ops.weight_only import weight_only_matmul_op

SHAPES = {"qkv": (3072, 2048), "o": (2048, 2048), "gate_up": (16384, 2048), "down": (2048, 8192),
          "lm_head": (128256, 2048)}
GROUP = 32
ROTATE_BYTES = 512 << 20
LAUNCHES = 40
SWEEP = {"BN": (1, 2, 4, 8), "BK": (512, 1024, 2048), "num_warps": (4, 8), "num_stages": (1,)}


def weights(fmt: int, n: int, k: int, copies: int) -> list[dict]:
    def one():
        if fmt == DENSE:
            return {"weight": torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02}
        if fmt == INT8:
            return {"weight": torch.randint(-127, 128, (n, k), device="cuda", dtype=torch.int8),
                    "scales": torch.rand(n, device="cuda", dtype=torch.bfloat16) * 1e-3}
        return {"weight": torch.randint(0, 256, (n, k // 2), device="cuda", dtype=torch.uint8),
                "scales": torch.rand(n, k // GROUP, device="cuda", dtype=torch.bfloat16) * 1e-3,
                "zeros": torch.randn(n, k // GROUP, device="cuda", dtype=torch.bfloat16) * 1e-3}
    return [one() for _ in range(copies)]


def nbytes(w: dict) -> int:
    return sum(t.numel() * t.element_size() for t in w.values())


def graph_us(launch, copies: list) -> float:
    """Microseconds per launch: LAUNCHES launches over the rotating copies, captured once, replayed."""
    for w in copies[:2]:
        launch(w)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(LAUNCHES):
            launch(copies[i % len(copies)])
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(5):
        start.record()
        for _ in range(5):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / (5 * LAUNCHES))
    return sorted(times)[2]


def gemv_launch(fmt, n, k, x, y, config, rms=False, swiglu=False, residual=None):
    """NORM 1: the RMSNorm as the decoder runs it, its weight folded into W."""
    grid = (triton.cdiv(n, config["BN"]),)

    def launch(w):
        triton_gemv.gemv_kernel[grid](x, w["weight"], w.get("scales", x), w.get("zeros", x), x,
                                      x, x if residual is None else residual, x, x, x, y, n, k, 0, FORMAT=fmt,
                                      G=GROUP if fmt == INT4 else 1, NORM=int(rms), EPS=1e-5, BIAS=False,
                                      SWIGLU=swiglu, ROPE=False, HEAD_DIM=2, RESIDUAL=residual is not None, **config)
    return launch


def baseline_launch(fmt, n, k, x):
    """cuBLAS for bf16, tinygemm for int4 (its own packed layout), ops/weight_only.py's batched kernel for int8."""
    rows = x[None, :k]
    if fmt == DENSE:
        return lambda w: torch.nn.functional.linear(rows, w["weight"])
    if fmt == INT8:
        return lambda w: weight_only_matmul_op()(rows, w["weight"], w["scales"], None)
    return lambda w: torch.ops.aten._weight_int4pack_mm(rows, w["packed"], GROUP, w["scales_and_zeros"])


def tinygemm_copies(copies: list) -> list:
    return [{"packed": torch.ops.aten._convert_weight_to_int4pack(w["weight"], 8),
             "scales_and_zeros": torch.stack([w["scales"].T, w["zeros"].T], -1).contiguous()} for w in copies]


def bench_shape(name: str, fmt: int, n: int, k: int) -> dict:
    sample = weights(fmt, n, k, 1)
    copies = sample + weights(fmt, n, k, max(1, -(-ROTATE_BYTES // nbytes(sample[0]))) - 1)
    size = nbytes(copies[0])
    x = torch.randn(2 * k, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(n, device="cuda", dtype=torch.bfloat16)
    base_copies = tinygemm_copies(copies) if fmt == INT4 else copies
    result = {"bytes": size, "baseline_us": graph_us(baseline_launch(fmt, n, k, x), base_copies), "sweep": []}
    for values in itertools.product(*SWEEP.values()):
        config = dict(zip(SWEEP, values))
        try:
            us = graph_us(gemv_launch(fmt, n, k, x, y, config), copies)
        except Exception as error:  # a configuration that does not compile (registers, shared memory)
            result["sweep"].append({**config, "error": str(error)[:120]})
            continue
        result["sweep"].append({**config, "us": us})
    timed = [row for row in result["sweep"] if "us" in row]
    best = min(timed, key=lambda row: row["us"])
    result["best"] = best
    config = {key: best[key] for key in SWEEP}
    residual = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    result["best_with_norm_us"] = graph_us(gemv_launch(fmt, n, k, x, y, config, rms=True), copies)
    result["best_with_residual_us"] = graph_us(gemv_launch(fmt, n, k, x, y, config, residual=residual), copies)
    paired = config | {"BN": max(2, config["BN"])}
    result["with_norm_swiglu_us"] = graph_us(gemv_launch(fmt, n, k, x, y, paired, rms=True, swiglu=True), copies)
    base_gbs, best_gbs = size / result["baseline_us"] / 1e3, size / best["us"] / 1e3
    print(f"{name:8s} fmt {fmt} {n}x{k}: baseline {result['baseline_us']:.1f} us ({base_gbs:.0f} GB/s), gemv best "
          f"{best['us']:.1f} us ({best_gbs:.0f} GB/s) {config}; +rms {result['best_with_norm_us']:.1f}, "
          f"+residual {result['best_with_residual_us']:.1f}, +rms+swiglu {result['with_norm_swiglu_us']:.1f}",
          flush=True)
    del copies, base_copies
    torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--formats", default="0,2,1")
    args = parser.parse_args()
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "shapes": {}}
    for fmt in map(int, args.formats.split(",")):
        for name, (n, k) in SHAPES.items():
            report["shapes"][f"{name}/{fmt}"] = bench_shape(name, fmt, n, k)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

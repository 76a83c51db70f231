"""Batch-1 matmul kernels on the GPU, one weight read each: cuBLAS and tinygemm against ops/gemv.py's kernel.

For each Llama-3.2-1B decode shape and weight format, the time of one y = x @ W.T for a single row, as GB/s of
weight bytes read (HBM bandwidth is the ceiling). Each kernel runs inside a CUDA graph of many launches that cycle
through enough weight copies (>= 512 MB) that no launch finds its weight in L2, as in a real decode step. The gemv
kernel is timed as the decoder calls it (q/k/v: RMSNorm + rotary; o, down: + residual; gate/up: RMSNorm + SwiGLU;
LM head: RMSNorm with its weight) and swept over block configurations, which is where ops/gemv.py's BLOCKS come
from: a fusion changes the best configuration (the norm's sum of squares is amortised over more rows).

    python bench/gpu_gemv.py --out bench/results/gpu-gemv-<date>.json [--formats 2] [--shapes qkv,o]
        [--sweep '{"BN": [2, 4], "BK": [256, 512], "num_warps": [1, 2, 4]}']
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

# name: (N, K, fusion as the decoder calls it)
SHAPES = {"qkv": (3072, 2048, "rms+rope"), "o": (2048, 2048, "residual"), "gate_up": (16384, 2048, "rms+swiglu"),
          "down": (2048, 8192, "residual"), "lm_head": (128256, 2048, "rms+weight")}
GROUP = 32
ROTATE_BYTES = 512 << 20
LAUNCHES = 40
SWEEP = {"BN": (2, 4, 8), "BK": (512, 1024, 2048), "num_warps": (4, 8), "num_stages": (1,)}  # BN even: row pairs
HEAD_DIM = 64


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


def gemv_launch(fmt, n, k, fusion, config, t):
    """The kernel as ops/gemv.py launches it for `fusion` (the norm's weight folded into W except on the LM head)."""
    grid = (triton.cdiv(n, config["BN"]),)
    rope, norm = "rope" in fusion, 2 if "weight" in fusion else int("rms" in fusion)

    def launch(w):
        triton_gemv.gemv_kernel[grid](t["x"], w["weight"], w.get("scales", t["x"]), w.get("zeros", t["x"]), t["x"],
                                      t["norm"], t["residual"], t["cos"], t["sin"], t["position"], t["y"], n, k,
                                      (n // (2 * HEAD_DIM)) * HEAD_DIM if rope else 0, FORMAT=fmt,
                                      G=GROUP if fmt == INT4 else 1, NORM=norm,
                                      EPS=1e-5, BIAS=False, SWIGLU="swiglu" in fusion, ROPE=rope, HEAD_DIM=HEAD_DIM,
                                      RESIDUAL=fusion == "residual", **config)
    return launch


def operands(n: int, k: int) -> dict:
    cuda = {"device": "cuda"}
    return {"x": torch.randn(k, **cuda, dtype=torch.bfloat16), "norm": torch.rand(k, **cuda, dtype=torch.bfloat16),
            "residual": torch.randn(n, **cuda, dtype=torch.bfloat16), "cos": torch.rand(8, HEAD_DIM // 2, **cuda),
            "sin": torch.rand(8, HEAD_DIM // 2, **cuda), "position": torch.tensor([3], **cuda),
            "y": torch.empty(n, **cuda, dtype=torch.bfloat16)}


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


def bench_shape(name: str, fmt: int, n: int, k: int, fusion: str, sweep: dict) -> dict:
    sample = weights(fmt, n, k, 1)
    copies = sample + weights(fmt, n, k, max(1, -(-ROTATE_BYTES // nbytes(sample[0]))) - 1)
    size = nbytes(copies[0])
    t = operands(n, k)
    base_copies = tinygemm_copies(copies) if fmt == INT4 else copies
    result = {"bytes": size, "fusion": fusion, "baseline_us": graph_us(baseline_launch(fmt, n, k, t["x"]), base_copies),
              "sweep": []}
    for values in itertools.product(*sweep.values()):
        config = dict(zip(sweep, values))
        try:
            us = graph_us(gemv_launch(fmt, n, k, fusion, config, t), copies)
        except Exception as error:  # a configuration that does not compile (registers, shared memory)
            result["sweep"].append({**config, "error": str(error)[:120]})
            continue
        result["sweep"].append({**config, "us": us})
    best = min((row for row in result["sweep"] if "us" in row), key=lambda row: row["us"])
    result["best"] = best
    base_gbs, best_gbs = size / result["baseline_us"] / 1e3, size / best["us"] / 1e3
    print(f"{name:8s} fmt {fmt} {n}x{k} ({fusion}): baseline {result['baseline_us']:.1f} us ({base_gbs:.0f} GB/s), "
          f"gemv best {best['us']:.1f} us ({best_gbs:.0f} GB/s) {({key: best[key] for key in sweep})}", flush=True)
    del copies, base_copies
    torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--formats", default="0,2,1")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--sweep", type=json.loads, default={}, help="JSON: sweep values replacing the defaults")
    args = parser.parse_args()
    sweep = {**SWEEP, **args.sweep}
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "shapes": {}}
    for fmt in map(int, args.formats.split(",")):
        for name in args.shapes.split(","):
            n, k, fusion = SHAPES[name]
            report["shapes"][f"{name}/{fmt}"] = bench_shape(name, fmt, n, k, fusion, sweep)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

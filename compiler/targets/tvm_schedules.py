"""CPU schedules for the TVM lowering's kernels, as dlight rules (TVM's default CPU pipeline schedules nothing).

- LinearRule ("matmul" blocks): parallel over 32-column groups of the [K, N] weight; per group and block of K,
  every input row: dequantize the block's weights into registers, accumulate 32 columns with vector FMAs.
- AttentionRule ("attention" blocks): every stage computed per (row, KV head), parallel over those; scores
  vectorize over cache positions, the weighted sum over head_dim.
- RowwiseRule (norms, rotary, elementwise): parallel over rows, producers computed per row, inner loop vectorized.
"""
from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl

from .tvm_weights import HALF

VECTOR = 16
K_BLOCK = 64  # 64 x 32 fp32 weights: 8 KB, a block of K stays in L1 while every row of the input passes


def cpu_rules() -> list:
    return [LinearRule(), AttentionRule(), RowwiseRule()]


def _blocks(sch: s_tir.Schedule) -> dict[str, object]:
    root = sch.get_sblock("root", func_name="main")
    return {sch.get(b).name_hint: b for b in sch.get_child_blocks(root)}


def _static(sch: s_tir.Schedule, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def _vectorize_inner(sch: s_tir.Schedule, block) -> None:
    loop = sch.get_loops(block)[-1]
    extent = _static(sch, loop)
    if extent and extent % VECTOR == 0:
        sch.vectorize(sch.split(loop, [None, VECTOR])[1])


class _BlockRule(dl.ScheduleRule):
    """A rule over a PrimFunc's named blocks: `schedule` returns the schedule, or None where the rule does not apply."""

    def apply(self, func, target, tunable):
        if not isinstance(func, tirx.PrimFunc):
            return None
        sch = s_tir.Schedule(func)
        return self.schedule(sch, _blocks(sch))

    def schedule(self, sch: s_tir.Schedule, blocks: dict[str, object]) -> s_tir.Schedule | None:
        raise NotImplementedError


class LinearRule(_BlockRule):
    """Parallel over TILE-column groups of the [K, N] weight; per group, K in blocks of K_BLOCK, each block's weights
    dequantized into registers per row and accumulated into the output rows in place (the block stays in L1 while
    every row passes)."""

    def schedule(self, sch, blocks):
        if "matmul" not in blocks or "embed" in blocks:
            return None
        matmul = blocks["matmul"]
        m, n, k = sch.get_loops(matmul)
        columns, half, lane = sch.split(n, [None, 2, HALF])
        k_outer, k_inner = sch.split(k, [None, K_BLOCK]) if _static(sch, k) % K_BLOCK == 0 else (None, k)
        sch.reorder(*([columns, k_outer] if k_outer else [columns]), m, k_inner, half, lane)
        sch.parallel(columns)
        if "dequant" in blocks:
            sch.compute_at(blocks["dequant"], k_inner)
            sch.set_scope(blocks["dequant"], 0, "local")
            _, dh, dl_ = sch.split(sch.get_loops(blocks["dequant"])[-1], [None, 2, HALF])
            sch.unroll(dh)
            sch.vectorize(dl_)
        sch.unroll(half)
        sch.vectorize(lane)
        init = sch.decompose_reduction(matmul, k_outer or m)
        sch.vectorize(sch.get_loops(init)[-1])
        if "epilogue" in blocks:
            sch.reverse_compute_at(blocks["epilogue"], columns)
        return sch


class AttentionRule(_BlockRule):
    def schedule(self, sch, blocks):
        if "attention" not in blocks:
            return None
        out = blocks["attention"]
        m, h, _, _ = sch.get_loops(out)
        task = sch.fuse(m, h)
        sch.parallel(task)
        for name in ("weighted", "denom", "probs", "peak", "scores"):
            sch.compute_at(blocks[name], task)
        g, t, d = sch.get_loops(blocks["scores"])[-3:]  # vectorize over cache positions, d outermost
        sch.reorder(d, g, t)
        sch.vectorize(sch.split(t, [None, VECTOR])[1])
        sch.decompose_reduction(blocks["scores"], d)
        sch.vectorize(sch.split(sch.get_loops(blocks["probs"])[-1], [None, VECTOR])[1])
        g, e, t = sch.get_loops(blocks["weighted"])[-3:]  # cache positions outermost, vectorize over head_dim
        sch.reorder(t, g, e)
        if _static(sch, e) % VECTOR == 0:
            sch.vectorize(sch.split(e, [None, VECTOR])[1])
        sch.decompose_reduction(blocks["weighted"], t)
        return sch


class RowwiseRule(_BlockRule):
    """Each output block parallel over its rows; the other blocks computed per row of the last one if they can."""

    def schedule(self, sch, blocks):
        if "kv_write" in blocks:
            return None
        blocks = list(blocks.values())
        rows = sch.get_loops(blocks[-1])[0]
        for block in reversed(blocks[:-1]):
            if sch.get_consumers(block):
                try:
                    sch.compute_at(block, rows)
                    continue
                except s_tir.ScheduleError:
                    pass
            _parallel_rows(sch, block)
        _parallel_rows(sch, blocks[-1], rows)
        return sch


def _parallel_rows(sch: s_tir.Schedule, block, rows=None) -> None:
    sch.parallel(rows or sch.get_loops(block)[0])
    _vectorize_inner(sch, block)

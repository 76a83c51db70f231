"""The fixed, ordered pass pipeline: fusion passes, then ISQ."""
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .ir import Graph
from .isq import IsqScheme
from .passes import fuse_add_rms_norm, fuse_rotary_attention, pack_gate_up, pack_qkv, quantize_weights, tie_lm_head

logger = logging.getLogger("mistralrs.compiler")

FUSION_PASSES: list[tuple[str, Callable[[Graph], int]]] = [
    ("PackQKV", pack_qkv.run),
    ("PackGateUp", pack_gate_up.run),
    ("FuseAddRMSNorm", fuse_add_rms_norm.run),
    ("FuseRotaryAttention", fuse_rotary_attention.run),
    ("TieLMHead", tie_lm_head.run),
]
PASS_NAMES = [name for name, _ in FUSION_PASSES] + ["QuantizeWeights"]


@dataclass(slots=True)
class PassRecord:
    name: str
    rewrites: int
    seconds: float


def run_passes(graph: Graph, scheme: IsqScheme | None, disabled: set[str] = frozenset(),
               on_weight: Callable[[int], None] | None = None) -> list[PassRecord]:
    logger.info("pass order: %s", " -> ".join(PASS_NAMES))
    records = [_timed(name, fn, graph) for name, fn in FUSION_PASSES if name not in disabled]
    if scheme is not None:
        records.append(_timed("QuantizeWeights", lambda g: quantize_weights.run(g, scheme, on_weight), graph))
    return records


def _timed(name: str, fn: Callable[[Graph], int], graph: Graph) -> PassRecord:
    start = time.perf_counter()
    rewrites = fn(graph)
    record = PassRecord(name, rewrites, time.perf_counter() - start)
    logger.info("pass %s: %d rewrites in %.2fs, %s", name, rewrites, record.seconds, dict(graph.op_counts()))
    return record

"""QuantizeWeights (ISQ): every linear and embedding weight -> block-quantized codes."""
from collections.abc import Callable

from ...ops.quantize import quantize
from ..ir import Graph
from ..isq import IsqScheme


def quantizable_weights(graph: Graph) -> list[str]:
    names = {n.attrs["weight"] for n in graph.nodes if n.op in ("linear", "embed")}
    return sorted(names, key=list(graph.weights).index)


def run(graph: Graph, scheme: IsqScheme, on_weight: Callable[[str], None] | None = None) -> int:
    names = quantizable_weights(graph)
    for name in names:
        graph.weights[name] = quantize(
            graph.weights[name], scheme.bits, scheme.block_size, scheme.symmetric,
            float_zero_point=scheme.float_zero_point, refine=scheme.refine,
        )
        if on_weight:
            on_weight(name)
    return len(names)

"""QuantizeWeights (ISQ): every linear and embedding weight -> block-quantized codes.

The token embedding (and so a tied LM head) takes the scheme's `embedding_scheme` when it has one:
it is the most quantization-sensitive tensor of small models.
"""
from collections.abc import Callable

from ...ops.quantize import quantize
from ..ir import Graph
from ..isq import SCHEMES, IsqScheme


def quantizable_weights(graph: Graph) -> list[str]:
    names = {n.attrs["weight"] for n in graph.nodes if n.op in ("linear", "embed")}
    return sorted(names, key=list(graph.weights).index)


def run(graph: Graph, scheme: IsqScheme, on_weight: Callable[[int], None] | None = None) -> int:
    """`on_weight(total)` is called after each weight, for progress."""
    names = quantizable_weights(graph)
    embedding = {n.attrs["weight"] for n in graph.nodes if n.op == "embed"}
    for name in names:
        chosen = SCHEMES[scheme.embedding_scheme] if name in embedding and scheme.embedding_scheme else scheme
        graph.weights[name] = quantize(
            graph.weights[name], chosen.bits, chosen.block_size, chosen.symmetric,
            float_zero_point=chosen.float_zero_point, refine=chosen.refine,
        )
        if on_weight:
            on_weight(len(names))
    return len(names)

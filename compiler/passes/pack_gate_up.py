"""PackGateUp: gate/up projections -> one linear with [gate; up] rows, then a split."""
from ..ir import Graph
from .pack_linears import pack_sibling_linears, sibling_linears


def run(graph: Graph) -> int:
    groups = sibling_linears(graph, ("gate_proj.weight", "up_proj.weight"))
    return pack_sibling_linears(graph, groups, "packed.{index}.gate_up_proj")

"""PackQKV: q/k/v projections -> one linear with [q; k; v] rows, then a split."""
from ..ir import Graph
from .pack_linears import pack_sibling_linears, sibling_linears


def run(graph: Graph) -> int:
    groups = sibling_linears(graph, ("q_proj.weight", "k_proj.weight", "v_proj.weight"))
    return pack_sibling_linears(graph, groups, "packed.{index}.qkv_proj")

"""FuseAddRMSNorm: add(a, b) -> s; rms_norm(s) -> y  ==>  skip_rms_norm(a, b) -> (y, s)."""
from ..ir import Graph, Node


def run(graph: Graph) -> int:
    fused = 0
    for add in [n for n in graph.nodes if n.op == "add"]:
        norms = [c for c in graph.consumers(add.outputs[0]) if c.op == "rms_norm"]
        if len(norms) != 1:
            continue
        norm = norms[0]
        skip = Node("skip_rms_norm", list(add.inputs), [norm.outputs[0], add.outputs[0]], dict(norm.attrs))
        graph.nodes[graph.nodes.index(add)] = skip
        graph.nodes.remove(norm)
        fused += 1
    return fused

"""FuseRotaryAttention: rotary(q), rotary(k) feeding attention  ==>  attention with rotary inside."""
from ..ir import Graph


def run(graph: Graph) -> int:
    fused = 0
    for attention in [n for n in graph.nodes if n.op == "attention" and not n.attrs["rotary"]]:
        rotaries = [graph.producer(v) for v in attention.inputs[:2]]
        if not all(r is not None and r.op == "rotary" and len(graph.consumers(r.outputs[0])) == 1 for r in rotaries):
            continue
        attention.inputs[:2] = [r.inputs[0] for r in rotaries]
        attention.attrs["rotary"] = True
        for rotary in rotaries:
            graph.nodes.remove(rotary)
        fused += 1
    if fused and not any(n.op == "rotary" for n in graph.nodes):
        graph.nodes = [n for n in graph.nodes if n.op != "positions"]
    return fused

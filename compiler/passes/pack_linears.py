"""Shared rewrite: linears that read the same input become one linear over concatenated weights + a split."""
import numpy as np

from ..ir import Graph, Node


def pack_sibling_linears(graph: Graph, groups: list[list[Node]], packed_name: str) -> int:
    for index, siblings in enumerate(groups):
        _pack(graph, siblings, packed_name.format(index=index))
    return len(groups)


def _pack(graph: Graph, siblings: list[Node], name: str) -> None:
    weights = [graph.weights.pop(n.attrs["weight"]) for n in siblings]
    graph.weights[name + ".weight"] = np.concatenate(weights, axis=0)
    attrs = {"weight": name + ".weight"}
    if siblings[0].attrs.get("bias"):
        graph.weights[name + ".bias"] = np.concatenate([graph.weights.pop(n.attrs["bias"]) for n in siblings])
        attrs["bias"] = name + ".bias"
    first = graph.nodes.index(siblings[0])
    for node in siblings:
        graph.nodes.remove(node)
    packed_out = name + ".out"
    split = Node("split", [packed_out], [n.outputs[0] for n in siblings], {"sizes": [w.shape[0] for w in weights]})
    graph.nodes[first:first] = [Node("linear", list(siblings[0].inputs), [packed_out], attrs), split]


def sibling_linears(graph: Graph, suffixes: tuple[str, ...]) -> list[list[Node]]:
    """Groups of linears whose weights end in `suffixes`, in that order, sharing one input."""
    groups = []
    for node in graph.nodes:
        if node.op == "linear" and node.attrs["weight"].endswith(suffixes[0]):
            prefix = node.attrs["weight"][: -len(suffixes[0])]
            group = [_linear_by_weight(graph, prefix + s) for s in suffixes]
            if all(g is not None and g.inputs == node.inputs for g in group):
                groups.append(group)
    return groups


def _linear_by_weight(graph: Graph, weight: str) -> Node | None:
    return next((n for n in graph.nodes if n.op == "linear" and n.attrs["weight"] == weight), None)

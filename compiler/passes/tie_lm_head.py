"""TieLMHead: a tied model's LM head reads the embedding table instead of a copy of it."""
from ...model_zoo.graph import EMBED, LM_HEAD
from ..ir import Graph


def run(graph: Graph) -> int:
    if not graph.config.tie_word_embeddings:
        return 0
    for node in graph.nodes:
        if node.op == "linear" and node.attrs["weight"] == LM_HEAD:
            node.attrs["weight"] = EMBED
    del graph.weights[LM_HEAD]
    return 1

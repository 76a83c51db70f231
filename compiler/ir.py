"""The compiler's graph IR: backend-neutral decoder ops over named values, weights held by name.

Graph inputs: `input_ids` [B, S] and `seqlens_k` [B] (tokens already in the KV cache plus S, minus 1)
and `total_sequence_length` (max of seqlens_k + 1). Each `attention` node owns the KV cache state of
its layer. Output: `logits` [B, V] of each row's last position.
"""
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..model_zoo.config import DecoderConfig
from ..ops.quantize import QuantizedTensor

Weight = np.ndarray | QuantizedTensor

GRAPH_INPUTS = ("input_ids", "seqlens_k", "total_sequence_length")
GRAPH_OUTPUTS = ("logits",)


@dataclass(slots=True)
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    config: DecoderConfig
    nodes: list[Node] = field(default_factory=list)
    weights: dict[str, Weight] = field(default_factory=dict)

    def add(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> Node:
        node = Node(op, inputs, outputs, attrs)
        self.nodes.append(node)
        return node

    def producer(self, value: str) -> Node | None:
        return next((n for n in self.nodes if value in n.outputs), None)

    def consumers(self, value: str) -> list[Node]:
        return [n for n in self.nodes if value in n.inputs]

    def op_counts(self) -> Counter:
        return Counter(n.op for n in self.nodes)

    def weight_bytes(self) -> int:
        return sum(w.nbytes for w in self.weights.values())

    def drop_unused_weights(self) -> None:
        used = {n.attrs[k] for n in self.nodes for k in ("weight", "bias") if n.attrs.get(k)}
        for name in list(self.weights):
            if name not in used:
                del self.weights[name]

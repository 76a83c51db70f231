"""Lower compiler IR to an ONNX graph that uses ONNX Runtime's CPU contrib ops."""
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from ...model_zoo.rope import cos_sin_tables
from ...ops.quantize import QuantizedTensor
from ..ir import Graph, Node
from .onnx_quantized import KernelForm, kernel_form
from .onnx_writer import MS_DOMAIN, OnnxWriter


class OnnxLowering:
    def __init__(self, graph: Graph, writer: OnnxWriter, accuracy_levels: dict[int, int]):
        self.graph, self.cfg, self.w = graph, graph.config, writer
        self.accuracy_levels = accuracy_levels  # weight bits -> MatMulNBits accuracy_level
        self.rank: dict[str, int] = {}
        self._forms: dict[str, KernelForm] = {}
        self._packed_qkv: dict[str, str] = {}  # q value of a split left out -> the packed tensor attention reads

    def run(self, path: Path) -> None:
        last_use = self._last_uses()
        for index, node in enumerate(self.graph.nodes):
            getattr(self, "_" + node.op)(node)
            self.rank.update({o: self._out_rank(node) for o in node.outputs})
            for name in last_use.pop(index, ()):  # lowered into the data file: drop the numpy copies
                self.graph.weights.pop(name, None)
                self._forms.pop(name, None)
        self.w.save(path, self._graph_inputs(), self._graph_outputs())

    def _out_rank(self, node: Node) -> int:
        fixed = {"last_token": 2, "embed": 3, "positions": 2}
        return fixed.get(node.op) or self.rank[node.inputs[0]]

    def _last_uses(self) -> dict[int, list[str]]:
        """Node index -> the weights no later node reads."""
        last = {n.attrs[key]: i for i, n in enumerate(self.graph.nodes) for key in ("weight", "bias") if n.attrs.get(key)}
        by_node: dict[int, list[str]] = {}
        for name, index in last.items():
            by_node.setdefault(index, []).append(name)
        return by_node

    # -- graph interface ---------------------------------------------------------------------------------
    def _graph_inputs(self) -> list:
        cfg = self.cfg
        kv_shape = ["batch", cfg.num_kv_heads, "max_seq_len", cfg.head_dim]
        inputs = [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
            helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
        ]
        for layer in range(cfg.num_layers):
            for kind in ("key", "value"):
                inputs.append(helper.make_tensor_value_info(f"past_{kind}_{layer}", TensorProto.FLOAT, kv_shape))
        return inputs

    def _graph_outputs(self) -> list:
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", self.cfg.vocab_size])]
        for layer in range(self.cfg.num_layers):
            for kind in ("key", "value"):
                outputs.append(helper.make_tensor_value_info(f"present_{kind}_{layer}", TensorProto.FLOAT, None))
        return outputs

    # -- ops ----------------------------------------------------------------------------------------------
    def _embed(self, node: Node) -> None:
        weight = self.graph.weights[node.attrs["weight"]]
        if isinstance(weight, QuantizedTensor):
            self._dequantize_rows(node.attrs["weight"], weight, node.inputs[0], node.outputs[0])
        else:
            self.w.node("Gather", [self.w.initializer(node.attrs["weight"], weight), node.inputs[0]], node.outputs)

    def _dequantize_rows(self, name: str, qt: QuantizedTensor, ids: str, out: str) -> None:
        """Embedding lookup straight from the quantized table (shared with a tied LM head)."""
        w = self.w
        form = self._kernel_form(name, qt, for_rows=True)
        block_shape = w.constant(np.array([0, 0, qt.num_blocks, 1]))
        parts = [self._term_rows(term, ids, block_shape, qt) for term in form.terms]
        if form.block_constant is not None:
            parts.append(self._gather_blocks(form.names["constant_rows"], ids, block_shape))
        flat = w.node("Reshape", [self._sum(parts), w.constant(np.array([0, 0, -1]))])[0]
        w.node("Slice", [flat, w.constant(np.array([0])), w.constant(np.array([qt.shape[1]])), w.constant(np.array([2]))], [out])

    def _term_rows(self, term, ids: str, block_shape: str, qt: QuantizedTensor) -> str:
        """[B, S, num_blocks, block] values of one kernel term for the rows `ids`."""
        w = self.w
        rows = w.node("Gather", [term.names["packed"], ids])[0]  # [B, S, nb, blob]
        if term.bits == 4:
            low = w.node("BitwiseAnd", [rows, w.constant(np.uint8(15))])[0]
            high = w.node("BitShift", [rows, w.constant(np.uint8(4))], direction="RIGHT")[0]
            pairs = w.node("Concat", [w.node("Unsqueeze", [low, w.constant(np.array([-1]))])[0],
                                      w.node("Unsqueeze", [high, w.constant(np.array([-1]))])[0]], axis=-1)[0]
            rows = w.node("Reshape", [pairs, w.constant(np.array([0, 0, qt.num_blocks, qt.block_size]))])[0]
        codes = w.node("Cast", [rows], to=TensorProto.FLOAT)[0]
        if term.zero_points is None:
            codes = w.node("Sub", [codes, w.constant(np.float32(2 ** (term.bits - 1)))])[0]
        elif "zero_rows" in term.names:
            codes = w.node("Sub", [codes, self._gather_blocks(term.names["zero_rows"], ids, block_shape)])[0]
        if term.input_scale != 1.0:
            codes = w.node("Mul", [codes, w.constant(np.float32(term.input_scale))])[0]
        return w.node("Mul", [codes, self._gather_blocks(term.names["scales"], ids, block_shape)])[0]

    def _gather_blocks(self, table: str, ids: str, block_shape: str) -> str:
        return self.w.node("Reshape", [self.w.node("Gather", [table, ids])[0], block_shape])[0]

    def _seq_len(self, x: str) -> str:
        """The S of x [B, S, ...] as an int64 scalar."""
        return self.w.node("Gather", [self.w.node("Shape", [x])[0], self.w.constant(np.array(1))])[0]

    def _positions(self, node: Node) -> None:
        w = self.w
        seq = self._seq_len(node.inputs[0])
        offsets = w.node("Range", [w.constant(np.array(0)), seq, w.constant(np.array(1))])[0]
        last = w.node("Cast", [node.inputs[1]], to=TensorProto.INT64)[0]
        first = w.node("Sub", [w.node("Add", [last, w.constant(np.array(1))])[0], seq])[0]
        w.node("Add", [w.node("Unsqueeze", [first, w.constant(np.array([1]))])[0], offsets], node.outputs)

    def _rms_norm(self, node: Node) -> None:
        scale = self.w.initializer(node.attrs["weight"], self.graph.weights[node.attrs["weight"]])
        self.w.node("SimplifiedLayerNormalization", [node.inputs[0], scale], node.outputs,
                    axis=-1, epsilon=node.attrs["eps"], stash_type=1)

    def _skip_rms_norm(self, node: Node) -> None:
        scale = self.w.initializer(node.attrs["weight"], self.graph.weights[node.attrs["weight"]])
        y, total = node.outputs
        self.w.node("SkipSimplifiedLayerNormalization", [*node.inputs, scale], [y, "", "", total],
                    domain=MS_DOMAIN, epsilon=node.attrs["eps"])

    def _head_rms_norm(self, node: Node) -> None:
        w, head_dim = self.w, node.attrs["head_dim"]
        heads = w.node("Reshape", [node.inputs[0], w.constant(np.array([0, 0, -1, head_dim]))])[0]
        scale = w.initializer(node.attrs["weight"], self.graph.weights[node.attrs["weight"]])
        normed = w.node("SimplifiedLayerNormalization", [heads, scale], axis=-1, epsilon=node.attrs["eps"], stash_type=1)[0]
        w.node("Reshape", [normed, w.constant(np.array([0, 0, -1]))], node.outputs)

    def _linear(self, node: Node) -> None:
        name = node.attrs["weight"]
        weight = self.graph.weights[name]
        out = node.outputs[0] if not node.attrs.get("bias") else self.w.fresh("linear")
        if isinstance(weight, QuantizedTensor):
            self._matmul_nbits(name, weight, node.inputs[0], out)
        elif self.rank[node.inputs[0]] == 2:
            self.w.node("Gemm", [node.inputs[0], self.w.initializer(name, weight)], [out], transB=1)
        else:
            self.w.node("MatMul", [node.inputs[0], self.w.initializer(name + ".T", weight.T)], [out])
        if node.attrs.get("bias"):
            bias = self.w.initializer(node.attrs["bias"], self.graph.weights[node.attrs["bias"]])
            self.w.node("Add", [out, bias], node.outputs)

    def _matmul_nbits(self, name: str, qt: QuantizedTensor, x: str, out: str) -> None:
        form = self._kernel_form(name, qt)
        n, k = qt.shape
        outputs = []
        for term in form.terms:
            zero = [term.names["zero_points"]] if term.zero_points is not None else []
            scaled = x if term.input_scale == 1.0 else self.w.node("Mul", [x, self.w.constant(np.float32(term.input_scale))])[0]
            outputs += self.w.node("MatMulNBits", [scaled, term.names["packed"], term.names["scales"], *zero], domain=MS_DOMAIN,
                                   K=k, N=n, bits=term.bits, block_size=qt.block_size,
                                   accuracy_level=self.accuracy_levels[term.bits])
        if form.block_constant is not None:
            sums = self._block_sums(x, k, qt.block_size)
            outputs += self.w.node("MatMul", [sums, form.names["constant"]])
        self._sum(outputs, out)

    def _sum(self, parts: list[str], out: str | None = None) -> str:
        total = parts[0]
        for part in parts[1:]:
            total = self.w.node("Add", [total, part])[0]
        return self.w.node("Identity", [total], [out])[0] if out else total  # Identity: folded by ORT at compile

    def _kernel_form(self, name: str, qt: QuantizedTensor, for_rows: bool = False) -> KernelForm:
        """The weight's kernel terms and their initializers, built once per weight (a tied table is used twice);
        `for_rows` adds the row-major tables an embedding lookup gathers from."""
        if name not in self._forms:
            self._forms[name] = kernel_form(qt, int8_activations=self.accuracy_levels[qt.bits] == 4)
        form = self._forms[name]
        for i, term in enumerate(form.terms):
            prefix = f"{name}.t{i}"
            term.names["packed"] = self.w.initializer(prefix + ".packed", term.packed)
            shared = next((t for t in form.terms[:i] if t.scales is term.scales), None)
            term.names["scales"] = shared.names["scales"] if shared else self.w.initializer(prefix + ".scales", term.scales)
            if term.zero_points is not None and for_rows:
                if term.zero_points.any():  # all-zero points need no table: the codes are the values
                    term.names["zero_rows"] = self.w.initializer(prefix + ".zero_rows", term.zero_points.astype(np.float32))
            elif term.zero_points is not None:
                term.names["zero_points"] = self._zero_points(prefix, term.packed_zero_points())
        if form.block_constant is not None and for_rows:
            form.names["constant_rows"] = self.w.initializer(name + ".block_constant_rows", form.block_constant)
        elif form.block_constant is not None:
            form.names["constant"] = self.w.initializer(name + ".block_constant", form.block_constant.T.copy())
        return form

    def _zero_points(self, prefix: str, packed: np.ndarray) -> str:
        """A MatMulNBits zero-point initializer; all-zero ones (the low nibbles of 8-bit codes) are shared, one per
        shape."""
        if packed.any():
            return self.w.initializer(prefix + ".zero_points", packed)
        return self.w.initializer("zero_points.zeros." + "x".join(map(str, packed.shape)), packed)

    def _block_sums(self, x: str, k: int, block_size: int) -> str:
        """Sums of x over each block of K: [..., K] -> [..., ceil(K / block_size)]. (A MatMul with a 0/1 membership
        matrix is one op instead of two but measured about 2x slower per decode step on ORT's CPU provider.)"""
        w = self.w
        padding = -k % block_size
        if padding:
            pads = np.zeros(2 * self.rank[x], np.int64)
            pads[-1] = padding
            x = w.node("Pad", [x, w.constant(pads)])[0]
        blocks = w.node("Reshape", [x, w.constant(np.array([0] * (self.rank[x] - 1) + [-1, block_size]))])[0]
        return w.node("ReduceSum", [blocks, w.constant(np.array([-1]))], keepdims=0)[0]

    def _split(self, node: Node) -> None:
        if self._feeds_packed_attention(node):
            self._packed_qkv[node.outputs[0]] = node.inputs[0]
            return
        self.w.node("Split", [node.inputs[0], self.w.constant(np.array(node.attrs["sizes"]))], node.outputs, axis=-1)

    def _rotary(self, node: Node) -> None:
        cos, sin = self._cos_sin()
        self.w.node("RotaryEmbedding", [node.inputs[0], node.inputs[1], cos, sin], node.outputs,
                    domain=MS_DOMAIN, interleaved=0, num_heads=node.attrs["num_heads"])

    def _cos_sin(self) -> tuple[str, str]:
        if "rotary.cos" not in self.w.names:
            cos, sin = cos_sin_tables(self.cfg, self.cfg.max_position_embeddings)
            self.w.initializer("rotary.cos", cos)
            self.w.initializer("rotary.sin", sin)
        return "rotary.cos", "rotary.sin"

    def _feeds_packed_attention(self, split: Node) -> bool:
        """A split into q, k, v that only one attention reads, in that order: GroupQueryAttention takes the packed
        tensor itself (one node less a layer, and measured ~7% faster decode)."""
        readers = [n for value in split.outputs for n in self.graph.consumers(value)]
        return (len(readers) == 3 and all(n is readers[0] for n in readers) and readers[0].op == "attention"
                and readers[0].inputs[:3] == split.outputs)

    def _attention(self, node: Node) -> None:
        layer, rotary = node.attrs["layer"], node.attrs["rotary"]
        packed = self._packed_qkv.get(node.inputs[0])
        qkv = [packed, "", ""] if packed else node.inputs
        inputs = [*qkv, f"past_key_{layer}", f"past_value_{layer}", "seqlens_k", "total_sequence_length"]
        if rotary:
            inputs += list(self._cos_sin())
        self.w.node("GroupQueryAttention", inputs, [node.outputs[0], f"present_key_{layer}", f"present_value_{layer}"],
                    domain=MS_DOMAIN, num_heads=self.cfg.num_heads, kv_num_heads=self.cfg.num_kv_heads,
                    do_rotary=int(rotary), rotary_interleaved=0)

    def _silu_mul(self, node: Node) -> None:
        gate, up = node.inputs
        silu = self.w.node("Mul", [gate, self.w.node("Sigmoid", [gate])[0]])[0]
        self.w.node("Mul", [silu, up], node.outputs)

    def _add(self, node: Node) -> None:
        self.w.node("Add", node.inputs, node.outputs)

    def _last_token(self, node: Node) -> None:
        w = self.w
        last = w.node("Sub", [self._seq_len(node.inputs[0]), w.constant(np.array(1))])[0]
        w.node("Gather", [node.inputs[0], last], node.outputs, axis=1)

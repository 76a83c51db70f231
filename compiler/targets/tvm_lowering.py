"""Lower compiler IR to a Relax module: one `forward` function over TE kernels (tvm_kernels.py).

forward(input_ids [B, S] int32, past_lengths [B] int32, k_cache [B, L, KV, D, C], v_cache [B, L, KV, C, D],
        total: shape (t16,), *weights) -> logits [B, V]
B, S, C and t16 are symbolic: one function serves prefill (any S) and batched decode (S = 1). The executor passes
the cache rows of its batch window; each layer writes its new keys and values into them in place (call_tir_inplace)
and attends over positions [0, 16 * t16). Weights are function parameters, stored beside the library.
"""
import functools

import numpy as np
from tvm import relax, tirx

from ...model_zoo.rope import cos_sin_tables
from ..ir import Graph, Node
from . import tvm_kernels as kernels
from .tvm_weights import StoredWeight, store

INPUTS = ("input_ids", "past_lengths", "k_cache", "v_cache", "total")
ROTARY_TABLES = ("rotary.cos", "rotary.sin")


class TvmLowering:
    """`layout`: "kn" (cpu) or "nk" (cuda), see tvm_weights.py."""

    def __init__(self, graph: Graph, layout: str):
        self.graph, self.cfg, self.layout = graph, graph.config, layout
        self.stored: dict[str, StoredWeight] = {}
        self.arrays: dict[str, np.ndarray] = {}  # parameter name -> value, in parameter order
        self.params: dict[str, relax.Var] = {}
        self.values: dict[str, relax.Expr] = {}
        self.bb = relax.BlockBuilder()

    def run(self) -> tuple[object, dict[str, np.ndarray]]:
        """-> (IRModule, weights by parameter name in parameter order)."""
        self._store_weights()
        inputs = self._inputs()
        with self.bb.function("forward", [*inputs, *self.params.values()], {"num_input": len(inputs)}):
            with self.bb.dataflow():
                self._prologue(*inputs)
                for node in self.graph.nodes:
                    getattr(self, "_" + node.op)(node)
                logits = self.bb.emit_output(self.values["logits"])
            self.bb.emit_func_output(logits)
        return self.bb.finalize(), self.arrays

    # -- parameters ----------------------------------------------------------------------------------------
    def _store_weights(self) -> None:
        for node in self.graph.nodes:
            for key in ("weight", "bias"):
                name = node.attrs.get(key)
                if name and name not in self.stored and name not in self.arrays:
                    self._store(name, self.graph.weights.pop(name), as_matrix=node.op in ("linear", "embed")
                                and key == "weight")
        if any(n.op == "rotary" or (n.op == "attention" and n.attrs["rotary"]) for n in self.graph.nodes):
            for name, table in zip(ROTARY_TABLES, cos_sin_tables(self.cfg, self.cfg.max_position_embeddings)):
                self._param(name, table)

    def _store(self, name: str, weight, as_matrix: bool) -> None:
        if not as_matrix:
            self._param(name, np.asarray(weight, np.float32))
            return
        stored = store(weight, self.layout)
        self.stored[name] = stored
        for part, array in stored.arrays.items():
            self._param(f"{name}.{part}", array)

    def _param(self, name: str, array: np.ndarray) -> None:
        self.arrays[name] = array
        self.params[name] = relax.Var(name, relax.TensorType(array.shape, str(array.dtype)))

    def _weight_args(self, name: str) -> list[relax.Var]:
        return [self.params[f"{name}.{part}"] for part in self.stored[name].arrays]

    # -- inputs --------------------------------------------------------------------------------------------
    def _inputs(self) -> list[relax.Var]:
        cfg = self.cfg
        batch, seq, length, t16 = (tirx.Var(n, "int64") for n in ("batch", "seq", "cache_len", "t16"))
        self.batch, self.seq, self.t16 = batch, seq, t16
        layers, heads, dim = cfg.num_layers, cfg.num_kv_heads, cfg.head_dim
        self.cache_types = [relax.TensorType([batch, layers, heads, dim, length], "float32"),
                            relax.TensorType([batch, layers, heads, length, dim], "float32")]
        return [
            relax.Var("input_ids", relax.TensorType([batch, seq], "int32")),
            relax.Var("past_lengths", relax.TensorType([batch], "int32")),
            relax.Var("k_cache", self.cache_types[0]),
            relax.Var("v_cache", self.cache_types[1]),
            relax.Var("total", relax.ShapeType([t16])),
        ]

    def _prologue(self, ids, past, k_cache, v_cache, total) -> None:
        self.ids, self.k_cache, self.v_cache = ids, k_cache, v_cache
        self.pos = self._te(kernels.positions, "positions", ids, past)
        self.kv_write = self.bb.add_func(
            kernels.kv_write_func(self.cfg.num_layers, self.cfg.num_kv_heads, self.cfg.head_dim), "kv_write")

    def _te(self, fn, name: str, *args, **kwargs):
        """Emit a TE kernel; relax values in `args`, compile-time constants in `kwargs`."""
        return self.bb.emit_te(functools.partial(fn, **kwargs), *args, primfunc_name_hint=name)

    def _set(self, node: Node, value) -> None:
        if len(node.outputs) == 1:
            self.values[node.outputs[0]] = value
        else:
            for index, name in enumerate(node.outputs):
                self.values[name] = self.bb.emit(relax.TupleGetItem(value, index))

    def _in(self, node: Node, index: int = 0):
        return self.values[node.inputs[index]]

    # -- ops -----------------------------------------------------------------------------------------------
    def _embed(self, node: Node) -> None:
        rows = self.bb.emit(relax.op.reshape(self.ids, [self.batch * self.seq]))
        name = node.attrs["weight"]
        self._set(node, self._te(kernels.embed, "embed", rows, *self._weight_args(name), stored=self.stored[name]))

    def _positions(self, node: Node) -> None:
        self._set(node, self.pos)

    def _rms_norm(self, node: Node) -> None:
        self._set(node, self._te(kernels.rms_norm, "rms_norm", self._in(node), self.params[node.attrs["weight"]],
                                 eps=node.attrs["eps"]))

    def _skip_rms_norm(self, node: Node) -> None:
        self._set(node, self._te(kernels.skip_rms_norm, "skip_rms_norm", self._in(node, 0), self._in(node, 1),
                                 self.params[node.attrs["weight"]], eps=node.attrs["eps"]))

    def _head_rms_norm(self, node: Node) -> None:
        self._set(node, self._te(kernels.head_rms_norm, "head_rms_norm", self._in(node),
                                 self.params[node.attrs["weight"]], eps=node.attrs["eps"],
                                 head_dim=node.attrs["head_dim"]))

    def _linear(self, node: Node) -> None:
        name, bias = node.attrs["weight"], node.attrs.get("bias")
        stored = self.stored[name]
        kind = "linear_f32" if stored.bits is None else f"linear_q{stored.bits}"
        args = [*self._weight_args(name), *([self.params[bias]] if bias else [])]
        self._set(node, self._te(kernels.linear, kind, self._in(node), *args, stored=stored, has_bias=bool(bias)))

    def _split(self, node: Node) -> None:
        self._set(node, self._te(kernels.split, "split", self._in(node), sizes=node.attrs["sizes"]))

    def _rotary(self, node: Node) -> None:
        self._set(node, self._rotate(self._in(node)))

    def _rotate(self, x):
        cos, sin = (self.params[name] for name in ROTARY_TABLES)
        return self._te(kernels.rotary, "rotary", x, self.pos, cos, sin, head_dim=self.cfg.head_dim)

    def _attention(self, node: Node) -> None:
        cfg, layer = self.cfg, node.attrs["layer"]
        q, k, v = (self._in(node, i) for i in range(3))
        if node.attrs["rotary"]:
            q, k = self._rotate(q), self._rotate(k)
        layer_value = relax.prim_value(tirx.IntImm("int64", layer))
        caches = self.bb.emit(relax.op.call_tir_inplace(
            self.kv_write, [self.k_cache, self.v_cache, k, v, self.ids, self.pos, layer_value], [0, 1],
            self.cache_types))
        self.k_cache = self.bb.emit(relax.TupleGetItem(caches, 0))
        self.v_cache = self.bb.emit(relax.TupleGetItem(caches, 1))
        out = self._te(kernels.attention, "attention", q, self.k_cache, self.v_cache, self.pos, self.ids,
                       tirx.IntImm("int64", layer), self.t16, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim)
        self._set(node, self.bb.emit(relax.op.reshape(out, [self.batch * self.seq, cfg.q_size])))

    def _silu_mul(self, node: Node) -> None:
        self._set(node, self._te(kernels.silu_mul, "silu_mul", self._in(node, 0), self._in(node, 1)))

    def _add(self, node: Node) -> None:
        self._set(node, self._te(kernels.add, "add", self._in(node, 0), self._in(node, 1)))

    def _last_token(self, node: Node) -> None:
        self._set(node, self._te(kernels.last_token, "last_token", self._in(node), self.ids))

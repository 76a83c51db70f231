"""TE kernels of the TVM lowering (one PrimFunc each; tvm_schedules.py schedules them for CPU).

Activations are 2-D, [M, C] with M = batch * seq rows (row m is token m % S of sequence m // S). `pos` [M] holds
each row's position. The KV cache is slot-major per layer: k_cache [B, L, KV, D, C] (keys transposed, so scores
vectorize over cache positions), v_cache [B, L, KV, C, D]; attention reads positions [0, T) with T = 16 * t16 and
masks those after each row's own position.
"""
from tvm import te, tirx
from tvm.script import tirx as T

from .tvm_weights import HALF, TILE, StoredWeight

NEG_INF = -3.0e38


def _i64(value: int):
    return tirx.const(value, "int64")


def weight_value(stored: StoredWeight, arrays: list[te.Tensor]):
    """(n, k) -> the fp32 weight w[n, k] read from its stored layout (dequantized on the fly)."""
    if stored.bits is None:
        w = arrays[0]
        return (lambda n, k: w[k, n]) if stored.layout == "kn" else (lambda n, k: w[n, k])
    codes, scales, offsets = arrays
    block = _i64(stored.block_size)
    if stored.layout == "kn":
        def code(n, k):
            if stored.bits == 8:
                return codes[k, n]
            byte = codes[k, n // _i64(TILE) * _i64(HALF) + n % _i64(HALF)]
            return (byte >> (n % _i64(TILE) // _i64(HALF) * _i64(4)).astype("uint8")) & tirx.const(15, "uint8")

        return lambda n, k: code(n, k).astype("float32") * scales[k // block, n] + offsets[k // block, n]

    def code_nk(n, k):
        if stored.bits == 8:
            return codes[n, k]
        return (codes[n, k // _i64(2)] >> (k % _i64(2) * _i64(4)).astype("uint8")) & tirx.const(15, "uint8")

    return lambda n, k: code_nk(n, k).astype("float32") * scales[n, k // block] + offsets[n, k // block]


def linear(x: te.Tensor, *arrays: te.Tensor, stored: StoredWeight, has_bias: bool):
    """y [M, N] = x [M, K] @ w.T (+ bias): a "dequant" stage (quantized weights), "matmul" over the padded
    columns, and an "epilogue" when there is a bias or padding to drop."""
    bias = arrays[-1] if has_bias else None
    weights = arrays[:-1] if has_bias else arrays
    value = weight_value(stored, list(weights))
    rows, cols, padded_rows = stored.rows, stored.cols, stored.padded_rows
    if stored.bits is not None:
        if stored.layout == "kn":
            w = te.compute((cols, padded_rows), lambda k, n: value(n, k), name="dequant")
            value = lambda n, k: w[k, n]  # noqa: E731
        else:
            w = te.compute((rows, cols), lambda n, k: value(n, k), name="dequant")
            value = lambda n, k: w[n, k]  # noqa: E731
    r = te.reduce_axis((0, cols), name="k")
    y = te.compute((x.shape[0], padded_rows), lambda m, n: te.sum(x[m, r] * value(n, r), axis=r), name="matmul")
    if bias is None and padded_rows == rows:
        return y
    return te.compute((x.shape[0], rows), lambda m, n: y[m, n] + bias[n] if bias is not None else y[m, n],
                      name="epilogue")


def embed(ids: te.Tensor, *arrays: te.Tensor, stored: StoredWeight):
    """ids [M] -> rows [M, hidden] of the (possibly quantized) table."""
    value = weight_value(stored, list(arrays))
    return te.compute((ids.shape[0], stored.cols), lambda m, c: value(ids[m].astype("int64"), c), name="embed")


def positions(ids: te.Tensor, past: te.Tensor):
    """pos [M] = past[b] + s for row m = b * S + s."""
    seq = ids.shape[1]
    return te.compute((ids.shape[0] * seq,), lambda m: past[m // seq] + (m % seq).astype("int32"), name="positions")


def _mean_square(x: te.Tensor, cols: int, name: str):
    r = te.reduce_axis((0, cols), name="c")
    return te.compute(x.shape[:1], lambda m: te.sum(x[m, r] * x[m, r], axis=r), name=name)


def rms_norm(x: te.Tensor, w: te.Tensor, eps: float):
    cols = int(x.shape[1])
    ss = _mean_square(x, cols, "sum_sq")
    return te.compute(x.shape, lambda m, c: x[m, c] * tirx.rsqrt(ss[m] / float(cols) + eps) * w[c], name="norm")


def skip_rms_norm(a: te.Tensor, b: te.Tensor, w: te.Tensor, eps: float):
    """(rms_norm(a + b), a + b)."""
    total = te.compute(a.shape, lambda m, c: a[m, c] + b[m, c], name="residual")
    return [rms_norm(total, w, eps), total]


def head_rms_norm(x: te.Tensor, w: te.Tensor, eps: float, head_dim: int):
    """RMS norm over each head's head_dim slice of x [M, heads * head_dim]."""
    heads = int(x.shape[1]) // head_dim
    r = te.reduce_axis((0, head_dim), name="d")
    ss = te.compute((x.shape[0], heads), lambda m, h: te.sum(x[m, h * head_dim + r] * x[m, h * head_dim + r], axis=r),
                    name="sum_sq")
    return te.compute(x.shape, lambda m, c: x[m, c] * tirx.rsqrt(ss[m, c // head_dim] / float(head_dim) + eps)
                      * w[c % head_dim], name="norm")


def rotary(x: te.Tensor, pos: te.Tensor, cos: te.Tensor, sin: te.Tensor, head_dim: int):
    """HF half-rotation rotary embedding of x [M, heads * head_dim] at pos [M]."""
    half = head_dim // 2

    def rotate(m, c):
        d = c % head_dim
        p = pos[m].astype("int64")
        first = x[m, c] * cos[p, d] - x[m, c + half] * sin[p, d]
        second = x[m, c] * cos[p, d - half] + x[m, c - half] * sin[p, d - half]
        return tirx.if_then_else(d < half, first, second)

    return te.compute(x.shape, rotate, name="rotary")


def silu_mul(gate: te.Tensor, up: te.Tensor):
    return te.compute(gate.shape, lambda m, c: gate[m, c] * tirx.sigmoid(gate[m, c]) * up[m, c], name="silu_mul")


def add(a: te.Tensor, b: te.Tensor):
    return te.compute(a.shape, lambda m, c: a[m, c] + b[m, c], name="add")


def split(x: te.Tensor, sizes: list[int]):
    def part(index: int):
        start = sum(sizes[:index])
        return te.compute((x.shape[0], sizes[index]), lambda m, c: x[m, c + start], name=f"split{index}")

    return [part(index) for index in range(len(sizes))]


def last_token(x: te.Tensor, ids: te.Tensor):
    """[M, C] -> [B, C]: each sequence's last row."""
    batch, seq = ids.shape
    return te.compute((batch, x.shape[1]), lambda b, c: x[b * seq + seq - 1, c], name="last_token")


def attention(q, k_cache, v_cache, pos, ids, layer, t16, num_kv_heads: int, head_dim: int):
    """Causal GQA of q [M, H * D] over cache positions [0, 16 * t16): out [M, KV, G, D] (= [M, H * D])."""
    seq, group = ids.shape[1], int(q.shape[1]) // (num_kv_heads * head_dim)
    rows, total = q.shape[0], t16 * _i64(16)
    scale = 1.0 / head_dim**0.5
    d = te.reduce_axis((0, head_dim), name="d")
    scores = te.compute(
        (rows, num_kv_heads, group, total),
        lambda m, h, g, t: te.sum(q[m, (h * group + g) * head_dim + d] * k_cache[m // seq, layer, h, d, t], axis=d),
        name="scores")
    visible = lambda m, t: t <= pos[m].astype("int64")  # noqa: E731
    t1 = te.reduce_axis((0, total), name="t1")
    peak = te.compute((rows, num_kv_heads, group), lambda m, h, g: te.max(
        tirx.if_then_else(visible(m, t1), scores[m, h, g, t1], NEG_INF), axis=t1), name="peak")
    probs = te.compute((rows, num_kv_heads, group, total), lambda m, h, g, t: tirx.if_then_else(
        visible(m, t), tirx.exp((scores[m, h, g, t] - peak[m, h, g]) * scale), 0.0), name="probs")
    t2 = te.reduce_axis((0, total), name="t2")
    norm = te.compute((rows, num_kv_heads, group), lambda m, h, g: te.sum(probs[m, h, g, t2], axis=t2), name="denom")
    t3 = te.reduce_axis((0, total), name="t3")
    weighted = te.compute(
        (rows, num_kv_heads, group, head_dim),
        lambda m, h, g, e: te.sum(probs[m, h, g, t3] * v_cache[m // seq, layer, h, t3, e], axis=t3), name="weighted")
    return te.compute((rows, num_kv_heads, group, head_dim), lambda m, h, g, e: weighted[m, h, g, e] / norm[m, h, g],
                      name="attention")


def kv_write_func(num_layers: int, num_kv_heads: int, head_dim: int):
    """In place: k_cache[b, layer, h, :, pos] = k[m, h], v_cache[b, layer, h, pos, :] = v[m, h] for each row m."""
    layers, heads, dim = num_layers, num_kv_heads, head_dim

    @T.prim_func(private=True, s_tir=True)
    def kv_write(var_k_cache: T.handle, var_v_cache: T.handle, var_k: T.handle, var_v: T.handle, var_ids: T.handle,
                 var_pos: T.handle, layer: T.int64):
        batch, seq, length, rows = T.int64(), T.int64(), T.int64(), T.int64()
        k_cache = T.match_buffer(var_k_cache, (batch, layers, heads, dim, length), "float32")
        v_cache = T.match_buffer(var_v_cache, (batch, layers, heads, length, dim), "float32")
        k = T.match_buffer(var_k, (rows, heads * dim), "float32")
        v = T.match_buffer(var_v, (rows, heads * dim), "float32")
        ids = T.match_buffer(var_ids, (batch, seq), "int32")
        pos = T.match_buffer(var_pos, (rows,), "int32")
        for m, h, d in T.grid(rows, heads, dim):
            with T.sblock("kv_write"):
                vm, vh, vd = T.axis.remap("SSS", [m, h, d])
                k_cache[vm // seq, layer, vh, vd, T.Cast("int64", pos[vm])] = k[vm, vh * dim + vd]
                v_cache[vm // seq, layer, vh, T.Cast("int64", pos[vm]), vd] = v[vm, vh * dim + vd]

    return kv_write

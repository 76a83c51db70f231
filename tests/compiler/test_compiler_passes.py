"""Each fusion pass as a unit: what it rewrites in the IR, and that the artifact computes the same logits without it."""
import logging
from collections import Counter

import onnx
import pytest
from tiny_models import executor_for, greedy_run, max_abs

from mistralrs.compiler.isq import parse_isq
from mistralrs.compiler.loaders import load_checkpoint
from mistralrs.compiler.pipeline import FUSION_PASSES, PASS_NAMES, run_passes
from mistralrs.compiler.spot_check import teacher_forced_logits
from mistralrs.model_zoo.config import DecoderConfig
from mistralrs.model_zoo.graph import LM_HEAD, build_decoder_graph
from mistralrs.runtime.artifact import open_artifact

FUSION_NAMES = [name for name, _ in FUSION_PASSES]
LAYERS = 2
# What each pass alone does to the plain graph of a 2-layer model: (rewrites, change in op counts).
EXPECTED = {
    "PackQKV": (LAYERS, {"linear": -2 * LAYERS, "split": LAYERS}),
    "PackGateUp": (LAYERS, {"linear": -LAYERS, "split": LAYERS}),
    # every add feeds the next norm except the last layer's, which feeds the final last_token
    "FuseAddRMSNorm": (2 * LAYERS - 1,
                       {"add": 1 - 2 * LAYERS, "rms_norm": 1 - 2 * LAYERS, "skip_rms_norm": 2 * LAYERS - 1}),
    "FuseRotaryAttention": (LAYERS, {"rotary": -2 * LAYERS, "positions": -1}),
    "TieLMHead": (1, {}),
}
PROMPT = [5, 17, 42, 7, 99, 3, 8]
TOLERANCE = 1e-4


def plain_graph(checkpoint_dir):
    checkpoint = load_checkpoint(checkpoint_dir)
    return build_decoder_graph(DecoderConfig.from_hf(checkpoint.config), checkpoint.load_tensor)


def only(name: str) -> set[str]:
    return set(FUSION_NAMES) - {name}


def test_pass_order_is_fixed():
    assert PASS_NAMES == ["PackQKV", "PackGateUp", "FuseAddRMSNorm", "FuseRotaryAttention", "TieLMHead",
                          "QuantizeWeights"]
    assert FUSION_NAMES == PASS_NAMES[:-1]


@pytest.mark.parametrize("disabled", [set(), {"PackGateUp", "TieLMHead"}])
def test_passes_run_and_log_in_pass_order(tiny_checkpoint, caplog, disabled):
    with caplog.at_level(logging.INFO, logger="mistralrs.compiler"):
        records = run_passes(plain_graph(tiny_checkpoint("qwen2")), parse_isq("Q8_0"), disabled)
    assert [r.name for r in records] == [name for name in PASS_NAMES if name not in disabled]
    assert f"pass order: {' -> '.join(PASS_NAMES)}" in caplog.messages
    logged = [m.split()[1].rstrip(":") for m in caplog.messages if m.startswith("pass ") and "rewrites" in m]
    assert logged == [r.name for r in records]


def test_manifest_records_passes_in_order(tiny_artifact):
    passes = open_artifact(tiny_artifact("qwen2")).manifest["passes"]
    assert [p["name"] for p in passes] == FUSION_NAMES
    assert [p["rewrites"] for p in passes] == [EXPECTED[name][0] for name in FUSION_NAMES]


@pytest.mark.parametrize("name", FUSION_NAMES)
def test_pass_rewrites_the_graph(tiny_checkpoint, name):
    before = plain_graph(tiny_checkpoint("qwen2"))
    counts, weights = before.op_counts(), set(before.weights)
    [record] = run_passes(before, None, only(name))
    rewrites, delta = EXPECTED[name]
    assert record.rewrites == rewrites
    counts.update(delta)
    assert +before.op_counts() == +counts
    if name == "TieLMHead":
        assert weights - set(before.weights) == {LM_HEAD}


def test_fused_attention_applies_rotary(tiny_checkpoint):
    graph = plain_graph(tiny_checkpoint("qwen3"))
    run_passes(graph, None, only("FuseRotaryAttention"))
    attention = [n for n in graph.nodes if n.op == "attention"]
    assert [n.attrs["rotary"] for n in attention] == [True] * LAYERS
    assert [n.inputs[:2] for n in attention] == [[f"l{i}.q_norm", f"l{i}.k_norm"] for i in range(LAYERS)]


def test_untied_model_keeps_its_lm_head(tiny_checkpoint):
    graph = plain_graph(tiny_checkpoint("llama-untied"))
    [record] = run_passes(graph, None, only("TieLMHead"))
    assert record.rewrites == 0 and LM_HEAD in graph.weights


def test_fully_fused_graph(tiny_checkpoint):
    graph = plain_graph(tiny_checkpoint("qwen2"))
    run_passes(graph, None)
    assert +graph.op_counts() == Counter({
        "linear": 4 * LAYERS + 1, "split": 2 * LAYERS, "skip_rms_norm": 2 * LAYERS - 1, "rms_norm": 2,
        "attention": LAYERS, "silu_mul": LAYERS, "add": 1, "embed": 1, "last_token": 1,
    })


@pytest.fixture(scope="module")
def fused_run(tiny_artifact) -> tuple[list[int], object]:
    return greedy_run(executor_for(tiny_artifact("qwen2")), PROMPT, steps=8)


@pytest.mark.parametrize("disabled", [{name} for name in FUSION_NAMES] + [set(FUSION_NAMES)],
                         ids=[*FUSION_NAMES, "all"])
def test_disabling_a_pass_keeps_the_logits(tiny_artifact, fused_run, disabled):
    tokens, fused = fused_run
    artifact = tiny_artifact("qwen2", disabled_passes=frozenset(disabled))
    assert [p["name"] for p in open_artifact(artifact).manifest["passes"]] == \
           [name for name in FUSION_NAMES if name not in disabled]
    unfused = teacher_forced_logits(executor_for(artifact), PROMPT, tokens)
    assert max_abs(unfused, fused) < TOLERANCE


@pytest.mark.parametrize("name, packed", [("qwen2", True), ("qwen3", False)])  # qwen3 normalises q and k apart
def test_onnx_attention_reads_the_packed_qkv(tiny_artifact, name, packed):
    model = onnx.load(str(tiny_artifact(name) / "model.onnx"), load_external_data=False)
    attentions = [n for n in model.graph.node if n.op_type == "GroupQueryAttention"]
    producers = {out: n.op_type for n in model.graph.node for out in n.output}
    assert len(attentions) == LAYERS
    for attention in attentions:
        assert (list(attention.input[1:3]) == ["", ""]) == packed
        assert not packed or producers[attention.input[0]] == "Add"  # the packed projection plus its bias, no Split

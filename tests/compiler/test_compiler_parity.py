"""fp32 artifacts of every supported family, from every CPU backend that lowers the IR, against the eager PyTorch
decoder and against transformers itself: prefill plus 16 greedy decode steps, every step's logits within 1e-3 and
the same greedy tokens."""
import itertools

import numpy as np
import pytest
from tiny_models import (DECODE_STEPS, SPECS, assert_parity, eager_model, executor_for, greedy_run, teacher_forced,
                         transformers_logits)

from mistralrs.compiler.loaders import load_checkpoint
from mistralrs.runtime.artifact import open_artifact


BACKENDS = ("onnxruntime", "tvm")


@pytest.fixture(scope="module", params=list(itertools.product(BACKENDS, SPECS)), ids="-".join)
def greedy(request, tiny_artifact, prompt) -> tuple[str, list[int], np.ndarray]:
    """(family, greedy tokens, their logits [17, V]) of the family's fp32 artifact from one backend."""
    backend, family = request.param
    tokens, logits = greedy_run(executor_for(tiny_artifact(family, backend=backend)), prompt)
    return family, tokens, logits


def test_matches_eager_decoder(greedy, tiny_checkpoint, prompt):
    family, tokens, logits = greedy
    assert_parity(logits, teacher_forced(eager_model(tiny_checkpoint(family)), prompt, tokens), tokens)


def test_matches_transformers(greedy, tiny_checkpoint, prompt):
    family, tokens, logits = greedy
    assert_parity(logits, teacher_forced(transformers_logits(tiny_checkpoint(family)), prompt, tokens), tokens)


def test_greedy_run_is_not_degenerate(greedy):
    """Random weights can collapse onto one token; parity over a single repeated token would prove little."""
    assert len(set(greedy[1])) > 1


def test_llama3_rope_scaling_is_compiled(tiny_checkpoint, tiny_artifact):
    assert load_checkpoint(tiny_checkpoint("llama3-rope")).config["rope_scaling"]["rope_type"] == "llama3"
    scaling = open_artifact(tiny_artifact("llama3-rope")).config.rope_scaling
    assert (scaling["rope_type"], scaling["factor"], scaling["original_max_position_embeddings"]) == ("llama3", 8.0, 64)


def test_sliding_window_caps_the_context(tiny_artifact, prompt):
    """Mistral's window (40) is below max_position_embeddings (256): the artifact's context stops at the window,
    and the parity run above stays inside it."""
    assert open_artifact(tiny_artifact("mistral-window")).max_context == 40
    assert open_artifact(tiny_artifact("mistral")).max_context == 256
    assert len(prompt) + DECODE_STEPS < 40

"""The real model: SmolLM2-135M-Instruct compiled at fp32 and every ISQ level (session fixture smollm2_artifact)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import batched_decode, greedy_run

from mistralrs.runtime.artifact import open_artifact
from mistralrs.runtime.executors import create_executor
from mistralrs.runtime.tokenizer import Tokenizer

PROMPT = "The capital of France is"
ISQ_LEVELS = [None, "Q8_0", "Q4_1", "Q4K"]
NATIVE = "Q4K, native decode"  # Q4K with decode steps run by the native tape (int8 activations)
AGREEMENT_PROMPTS = [
    "The capital of France is",
    "Water boils at a temperature of",
    "The three primary colors are",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The largest planet in the solar system is",
    "To make a cup of tea, first",
    "Photosynthesis is the process by which",
]
AGREEMENT_STEPS = 64
AGREEMENT_REPORT = Path(__file__).resolve().parents[2] / "bench" / "results" / "isq_agreement.md"


@pytest.fixture(scope="module")
def tokenizer(smollm2_artifact) -> Tokenizer:
    return Tokenizer.from_dir(open_artifact(smollm2_artifact(None)).tokenizer_dir)


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    return [tokenizer.encode(text, add_special_tokens=False) for text in AGREEMENT_PROMPTS]


@pytest.fixture(scope="module")
def executors(smollm2_artifact, prompts) -> dict:
    """One executor per ISQ level, with a slot per agreement prompt (decode runs them as one batch)."""
    max_seq_len = max(map(len, prompts)) + AGREEMENT_STEPS
    artifacts = {isq: smollm2_artifact(isq) for isq in ISQ_LEVELS} | {NATIVE: smollm2_artifact("Q4K", decode="native")}
    return {name: create_executor(open_artifact(path), len(prompts), max_seq_len, threads=2)
            for name, path in artifacts.items()}


@pytest.fixture(scope="module")
def transformers_model(smollm2_transformers):
    """transformers' LlamaForCausalLM on the GGUF's dequantized weights."""
    from transformers import AutoModelForCausalLM

    config, tensors = smollm2_transformers
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert (missing, unexpected) == (["lm_head.weight"], [])  # tied to the embedding
    assert model.lm_head.weight is model.model.embed_tokens.weight
    return model


def test_fp32_greedy_answers_paris(executors, tokenizer):
    tokens, _ = greedy_run(executors[None], tokenizer.encode(PROMPT, add_special_tokens=False), steps=3)
    assert tokenizer.decode(tokens).startswith(" Paris.")


def test_fp32_top5_matches_transformers(executors, tokenizer, transformers_model):
    prompt = tokenizer.encode(PROMPT, add_special_tokens=False)
    tokens, logits = greedy_run(executors[None], prompt, steps=3)
    with torch.no_grad():
        reference = transformers_model(torch.tensor([prompt + tokens[:-1]])).logits[0, len(prompt) - 1:].numpy()
    for step, (ours, theirs) in enumerate(zip(logits, reference)):
        top = np.argsort(-theirs)[:5]
        assert np.argsort(-ours)[:5].tolist() == top.tolist(), step
        assert np.abs(ours[top] - theirs[top]).max() < 1e-3, step


@pytest.mark.parametrize("isq", ISQ_LEVELS, ids=lambda isq: isq or "F32")
def test_every_isq_level_answers_paris(executors, tokenizer, isq):
    tokens, _ = greedy_run(executors[isq], tokenizer.encode(PROMPT, add_special_tokens=False), steps=1)
    assert tokenizer.decode(tokens).startswith(" Paris")


# --- top-1 agreement of each ISQ level with fp32, teacher forced on fp32's greedy continuations ----------------

def argmax_ids(executor, prompts: list[list[int]], forced: np.ndarray | None = None) -> np.ndarray:
    """[P, AGREEMENT_STEPS] argmax after each prompt and each next token: greedy, or teacher forced on `forced`."""
    steps = batched_decode(executor, prompts, AGREEMENT_STEPS - 1, forced)
    return np.stack([rows.argmax(-1) for rows in steps], axis=1)


@pytest.fixture(scope="module")
def agreement(executors, prompts) -> dict[str, float]:
    fp32 = argmax_ids(executors[None], prompts)
    matches = {name: argmax_ids(executor, prompts, fp32) == fp32 for name, executor in executors.items() if name}
    report = agreement_table(matches)
    print("\n" + report)
    AGREEMENT_REPORT.parent.mkdir(parents=True, exist_ok=True)
    AGREEMENT_REPORT.write_text(report)
    return {isq: float(m.mean()) for isq, m in matches.items()}


def table_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def agreement_table(matches: dict[str, np.ndarray]) -> str:
    """Markdown: a row per prompt with each level's agreeing positions, then each level's overall rate."""
    lines = [
        "# ISQ top-1 agreement with fp32 (SmolLM2-135M-Instruct, onnxruntime, cpu)", "",
        f"Teacher forced on the fp32 artifact's greedy continuation, {AGREEMENT_STEPS} positions per prompt "
        "(tests/compiler/test_compiler_smollm2.py).", "",
        table_row(["prompt", *matches]), table_row(["---"] * (len(matches) + 1)),
        *(table_row([f"`{text}`", *(f"{m[i].sum()}/{AGREEMENT_STEPS}" for m in matches.values())])
          for i, text in enumerate(AGREEMENT_PROMPTS)),
        table_row(["**all**", *(f"**{m.mean():.4f}** ({m.sum()}/{m.size})" for m in matches.values())]),
    ]
    return "\n".join(lines) + "\n"


# Q4_1 and Q4K (float zero points) reproduce the GGUF's Q4_1 grid exactly; Q8_0 (symmetric) re-quantizes it, with a
# per-block scale search (ggml's |max| / 127 rounding measured 0.9766 here; the search 0.9941).
def test_q8_0_agrees_with_fp32(agreement):
    assert agreement["Q8_0"] >= 0.98


@pytest.mark.parametrize("isq", ["Q4_1", "Q4K", NATIVE])
def test_4bit_agrees_with_fp32(agreement, isq):
    assert agreement[isq] >= 0.90

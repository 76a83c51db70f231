"""Tiny random checkpoints of every supported family, their artifacts, and how to run both.

Each checkpoint is a real transformers model (hidden 64, 2 layers, 4 heads, 2 KV heads, head_dim 16) saved
with save_pretrained, so the compiler reads it exactly as it would read a downloaded model.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mistralrs.compiler.compile import CompileOptions, compile_checkpoint
from mistralrs.compiler.isq import SCHEMES, IsqScheme
from mistralrs.compiler.loaders import load_checkpoint
from mistralrs.model_zoo.config import DecoderConfig
from mistralrs.model_zoo.decoder import DecoderLM
from mistralrs.ops.quantize import dequantize, quantize
from mistralrs.runtime.artifact import open_artifact
from mistralrs.runtime.executors import create_executor

CHAT_TEMPLATE = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
VOCAB_SIZE = 300
DECODE_STEPS = 16
MAX_SEQ_LEN = 48
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


@dataclass(frozen=True)
class TinySpec:
    config_class: str
    model_class: str
    overrides: dict = field(default_factory=dict)


SPECS = {
    "llama-tied": TinySpec("LlamaConfig", "LlamaForCausalLM", {"tie_word_embeddings": True}),
    "llama-untied": TinySpec("LlamaConfig", "LlamaForCausalLM", {"tie_word_embeddings": False}),
    "llama3-rope": TinySpec("LlamaConfig", "LlamaForCausalLM", {"rope_parameters": LLAMA3_ROPE}),
    "mistral": TinySpec("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    "mistral-window": TinySpec("MistralConfig", "MistralForCausalLM", {"sliding_window": 40}),
    "qwen2": TinySpec("Qwen2Config", "Qwen2ForCausalLM", {"tie_word_embeddings": True}),
    "qwen3": TinySpec("Qwen3Config", "Qwen3ForCausalLM"),
}


def train_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(["hello world, the quick brown fox jumps over the lazy dog"] * 20, trainer)
    return tokenizer


def random_model(spec: TinySpec, seed: int):
    """A transformers model whose every tensor is distinct: weights ~ N(0, 0.08), norms ~ 1 + 0.1 N(0, 1)."""
    import transformers

    config = getattr(transformers, spec.config_class)(**{
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": VOCAB_SIZE, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1, **spec.overrides,
    })
    torch.manual_seed(seed)
    model = getattr(transformers, spec.model_class)(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(1 + 0.1 * torch.randn_like(param) if "norm" in name else 0.08 * torch.randn_like(param))
    return model


def save_checkpoint(directory: Path, model, tokenizer: Tokenizer) -> Path:
    from transformers import PreTrainedTokenizerFast

    model.save_pretrained(directory)
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>")
    hf_tokenizer.chat_template = CHAT_TEMPLATE
    hf_tokenizer.save_pretrained(directory)
    return directory


def compile_tiny(checkpoint: Path, output: Path, isq: str | None = None,
                 disabled_passes: frozenset[str] = frozenset(), matmul_accuracy: str = "fp32",
                 backend: str = "onnxruntime", target: str = "cpu", decode: str = "onnxruntime") -> dict:
    backend_options = {"matmul_accuracy": matmul_accuracy} | ({"decode": decode} if decode != "onnxruntime" else {})
    options = CompileOptions(model=str(checkpoint), output=output, isq=isq, keep_source=False,
                             disabled_passes=disabled_passes, progress=False, backend=backend, target=target,
                             backend_options=backend_options)
    return compile_checkpoint(options)


def executor_for(artifact_dir: Path, max_slots: int = 1, max_seq_len: int = MAX_SEQ_LEN):
    return create_executor(open_artifact(artifact_dir), max_slots, max_seq_len, threads=2)


# --- running ------------------------------------------------------------------------------------------------------

def greedy_run(executor, prompt: list[int], steps: int = DECODE_STEPS, slot: int = 0) -> tuple[list[int], np.ndarray]:
    """Prefill then `steps` decode steps; returns the steps + 1 greedy tokens and their logits [steps + 1, V]."""
    rows = [executor.forward(slot, np.array([prompt]), np.array([0]))[0]]
    tokens = [int(rows[0].argmax())]
    for step in range(steps):
        rows.append(executor.forward(slot, np.array([[tokens[-1]]]), np.array([len(prompt) + step]))[0])
        tokens.append(int(rows[-1].argmax()))
    return tokens, np.stack(rows)


def batched_decode(executor, prompts: list[list[int]], steps: int, forced: np.ndarray | None = None):
    """Yield logits [B, V] after prefilling each prompt into slots 0..B-1, then after each of `steps` decode steps
    run as one batch; a step feeds each row's previous argmax (greedy) or forced[:, step] (teacher forcing)."""
    rows = np.stack([executor.forward(slot, np.array([p]), np.array([0]))[0] for slot, p in enumerate(prompts)])
    past = np.array([len(p) for p in prompts])
    yield rows
    for step in range(steps):
        fed = rows.argmax(-1) if forced is None else forced[:, step]
        rows = executor.forward(0, fed[:, None], past + step)
        yield rows


def eager_model(checkpoint: Path, scheme: IsqScheme | None = None) -> DecoderLM:
    """model_zoo's DecoderLM on the checkpoint's weights; with `scheme`, on the weights ISQ would produce."""
    loaded = load_checkpoint(checkpoint)

    def load(name: str) -> np.ndarray:
        weight = loaded.load_tensor(name)
        return weight if scheme is None else quantized_as_compiled(name, weight, scheme)

    return DecoderLM.from_tensors(DecoderConfig.from_hf(loaded.config), load, loaded.tensor_names())


def quantized_as_compiled(name: str, weight: np.ndarray, scheme: IsqScheme) -> np.ndarray:
    """dequantize(quantize(w)) for the tensors QuantizeWeights quantizes (embedding at its embedding_scheme)."""
    if name == "model.embed_tokens.weight" and scheme.embedding_scheme:
        scheme = SCHEMES[scheme.embedding_scheme]
    elif not name.endswith(("_proj.weight", "lm_head.weight", "embed_tokens.weight")):
        return weight
    qt = quantize(weight, scheme.bits, scheme.block_size, scheme.symmetric,
                  float_zero_point=scheme.float_zero_point, refine=scheme.refine)
    return dequantize(qt)


def teacher_forced(model, prompt: list[int], generated: list[int]) -> np.ndarray:
    """Logits [len(generated), V] of a causal model (ids [T] -> logits [T, V]) fed the prompt and all but the last
    generated token: the rows a greedy run sees before choosing each generated token."""
    ids = torch.tensor(prompt + generated[:-1])
    with torch.no_grad():
        return model(ids)[len(prompt) - 1:].float().numpy()


def transformers_logits(checkpoint: Path):
    """ids [T] -> logits [T, V] of transformers' own AutoModelForCausalLM on the saved directory."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    return lambda ids: model(ids[None]).logits[0]


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


PARITY_TOLERANCE = 1e-3


def assert_parity(logits: np.ndarray, reference: np.ndarray, tokens: list[int]) -> None:
    """[DECODE_STEPS + 1, V] logits within PARITY_TOLERANCE of the reference at every step, same greedy tokens."""
    per_step = np.abs(logits - reference).max(axis=-1)
    assert logits.shape == reference.shape == (DECODE_STEPS + 1, VOCAB_SIZE)
    assert per_step.max() < PARITY_TOLERANCE, f"max-abs logit difference per step: {per_step}"
    assert reference.argmax(-1).tolist() == tokens

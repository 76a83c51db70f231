"""After compiling: run the artifact and the eager reference on one prompt, report how close they are."""
import numpy as np
import torch

from ..model_zoo.config import DecoderConfig
from ..model_zoo.decoder import DecoderLM
from ..runtime.artifact import open_artifact
from ..runtime.executors import create_executor
from ..runtime.tokenizer import Tokenizer
from .loaders import load_checkpoint

PROMPT = "The capital of France is"
STEPS = 16


def spot_check(model: str, artifact_dir: str) -> dict:
    """Teacher-forced top-1 agreement with the fp32 eager reference over its own greedy continuation."""
    artifact = open_artifact(artifact_dir, verify=False)  # its checksums were computed from these files just now
    ids = Tokenizer.from_dir(artifact.tokenizer_dir).encode(PROMPT, add_special_tokens=False)
    reference = _eager_logits(model, ids)
    compiled = teacher_forced_logits(create_executor(artifact, 1, len(ids) + STEPS + 1, threads=2), ids,
                                     reference.argmax(-1).tolist())
    agree = int((compiled.argmax(-1) == reference.argmax(-1)).sum())
    return {"prompt": PROMPT, "max_abs_logit_diff": round(float(np.abs(compiled - reference).max()), 5),
            "top1_agreement": f"{agree}/{STEPS}"}


def teacher_forced_logits(executor, prompt: list[int], continuation: list[int]) -> np.ndarray:
    """Logits [len(continuation), V]: after the prompt, then after each continuation token in turn."""
    rows = [executor.forward(0, np.array([prompt]), np.array([0]))[0]]
    for i, token in enumerate(continuation[:-1]):
        rows.append(executor.forward(0, np.array([[token]]), np.array([len(prompt) + i]))[0])
    return np.stack(rows)


def _eager_logits(model: str, ids: list[int]) -> np.ndarray:
    checkpoint = load_checkpoint(model)
    reference = DecoderLM.from_tensors(DecoderConfig.from_hf(checkpoint.config), checkpoint.load_tensor,
                                       checkpoint.tensor_names())
    tokens = list(ids)
    with torch.no_grad():
        for _ in range(STEPS):
            tokens.append(int(reference(torch.tensor(tokens))[-1].argmax()))
        return reference(torch.tensor(tokens[:-1]))[len(ids) - 1:].numpy()

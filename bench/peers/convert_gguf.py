"""Dequantize a GGUF checkpoint into an fp32 HF model directory (for transformers and the ORT GenAI builder).

Runs in the bench venv: python bench/peers/convert_gguf.py GGUF OUT_DIR
(`from_pretrained(gguf_file=...)` marks the model as gguf-quantized and refuses to save it, so the tensors are
loaded into a meta model instead, as tests/compiler/test_loaders.py does.)
"""
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint


def convert(gguf: Path, out: Path) -> None:
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False, assign=True)
    model.tie_weights()
    missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"missing {missing}, unexpected {unexpected}")
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(out)
    print(f"wrote {out}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))

"""Checkpoint loaders: HF directories, the local HF cache, tiny GGUFs written here, and the real SmolLM2 GGUF."""

import json
import math
import re
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as QType
from tiny_models import train_tokenizer
from tokenizers import Tokenizer

from mistralrs.compiler.checkpoint import CheckpointError
from mistralrs.compiler.loaders import load_checkpoint

CHAT_TEMPLATE = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"

GGUF_TOP_LEVEL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
GGUF_PER_LAYER = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
GGUF_TYPES = {
    "token_embd.weight": QType.Q8_0, "output.weight": QType.BF16, "attn_q.weight": QType.Q4_1,
    "attn_k.weight": QType.Q4_1, "attn_v.weight": QType.Q8_0, "attn_output.weight": QType.F16,
    "ffn_gate.weight": QType.Q4_1, "ffn_up.weight": QType.Q4_1, "ffn_down.weight": QType.Q4_1,
}
# worst-case error relative to the tensor's largest magnitude
QUANT_TOLERANCE = {QType.F32: 0.0, QType.F16: 1e-3, QType.BF16: 1e-2, QType.Q8_0: 1 / 127, QType.Q4_1: 2 / 15}


# --- fixtures: a tiny tokenizer and tiny HF models ---------------------------------------------------------------

@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return train_tokenizer()


def tiny_model(arch: str, tie: bool = False, dtype=torch.float32):
    import transformers

    config_class, model_class = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
    }[arch]
    config = config_class(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=32 if arch == "qwen3" else 16, vocab_size=300, max_position_embeddings=256, tie_word_embeddings=tie,
        bos_token_id=0, eos_token_id=1,
    )
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():
        for param in model.parameters():  # norms and biases start constant; make every tensor distinct
            param.normal_(0, 0.02)
    return model.to(dtype)


def save_hf_dir(directory: Path, model, bpe: Tokenizer, **save_kwargs) -> dict[str, np.ndarray]:
    from transformers import PreTrainedTokenizerFast

    model.save_pretrained(directory, **save_kwargs)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    return {name: t.float().numpy() for name, t in model.state_dict().items()}


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory, bpe) -> tuple[Path, dict[str, np.ndarray]]:
    directory = tmp_path_factory.mktemp("hf") / "tiny-llama"
    return directory, save_hf_dir(directory, tiny_model("llama"), bpe)


def broken_copy(tmp_path: Path, source: Path) -> Path:
    directory = tmp_path / source.name
    shutil.copytree(source, directory)
    return directory


# --- HF directories ---------------------------------------------------------------------------------------------

def test_hf_dir_loads_identical_tensors(hf_llama):
    directory, tensors = hf_llama
    checkpoint = load_checkpoint(directory)
    assert (checkpoint.name, checkpoint.source_format) == ("tiny-llama", "hf")
    assert checkpoint.source_files == [directory / "model.safetensors"]
    assert checkpoint.config["num_hidden_layers"] == 2 and checkpoint.config["tie_word_embeddings"] is False
    assert (checkpoint.config["rope_theta"], checkpoint.config["rope_scaling"]) == (10000.0, None)
    assert checkpoint.generation_config["eos_token_id"] == 1
    assert sorted(checkpoint.tensor_names()) == sorted(tensors)
    for name, expected in tensors.items():
        loaded = checkpoint.load_tensor(name)
        assert loaded.dtype == np.float32 and np.array_equal(loaded, expected), name
        assert checkpoint.source_quantization(name) is None


def test_hf_dir_tokenizer_config_holds_chat_template(hf_llama, bpe):
    files = load_checkpoint(hf_llama[0]).tokenizer_files
    assert (hf_llama[0] / "chat_template.jinja").is_file()  # transformers saves it beside the config
    config = json.loads(files["tokenizer_config.json"])
    assert config["chat_template"] == CHAT_TEMPLATE and config["eos_token"] == "</s>"
    assert Tokenizer.from_str(files["tokenizer.json"].decode()).get_vocab() == bpe.get_vocab()


def test_hf_dir_tied_embeddings_have_no_lm_head(tmp_path, bpe):
    save_hf_dir(tmp_path / "tied", tiny_model("qwen2", tie=True), bpe)
    checkpoint = load_checkpoint(tmp_path / "tied")
    assert checkpoint.config["tie_word_embeddings"] is True
    assert "lm_head.weight" not in checkpoint.tensor_names()
    assert "model.layers.0.self_attn.q_proj.bias" in checkpoint.tensor_names()


def test_hf_dir_sharded_bf16_loads_as_float32(tmp_path, bpe):
    model = tiny_model("llama", dtype=torch.bfloat16)
    tensors = save_hf_dir(tmp_path / "sharded", model, bpe, max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    checkpoint = load_checkpoint(tmp_path / "sharded")
    assert len(checkpoint.source_files) > 1
    assert sorted(checkpoint.tensor_names()) == sorted(tensors)
    for name, expected in tensors.items():
        assert np.array_equal(checkpoint.load_tensor(name), expected), name


def remove(directory: Path, pattern: str) -> None:
    for path in directory.glob(pattern):
        path.unlink()


@pytest.mark.parametrize("missing, message", [
    ("config.json", "no config.json"),
    ("model.safetensors", "neither model.safetensors nor model.safetensors.index.json"),
    ("tokenizer.json", "no tokenizer.json"),
    ("tokenizer_config.json", "no tokenizer_config.json"),
])
def test_hf_dir_missing_file_is_named(tmp_path, hf_llama, missing, message):
    directory = broken_copy(tmp_path, hf_llama[0])
    remove(directory, missing)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(directory)


def test_hf_dir_pytorch_bin_is_rejected(tmp_path, hf_llama):
    directory = broken_copy(tmp_path, hf_llama[0])
    (directory / "model.safetensors").rename(directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*\.bin is not supported.*safetensors"):
        load_checkpoint(directory)


def test_hf_dir_missing_shard_is_named(tmp_path, bpe):
    save_hf_dir(tmp_path / "sharded", tiny_model("llama"), bpe, max_shard_size="20KB")
    shard = sorted((tmp_path / "sharded").glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=re.escape(shard.name)):
        load_checkpoint(tmp_path / "sharded")


def test_unknown_spec_and_non_gguf_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or directory, and not an HF model id"):
        load_checkpoint(tmp_path / "nothing" / "here.gguf")
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a .gguf file"):
        load_checkpoint(tmp_path / "weights.pt")


# --- the local HF cache -----------------------------------------------------------------------------------------

def fake_cache_entry(hub: Path, model_id: str, source: Path, revision: str, pin: bool) -> Path:
    repo = hub / f"models--{model_id.replace('/', '--')}"
    shutil.copytree(source, repo / "snapshots" / revision)
    if pin:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(revision)
    return repo / "snapshots" / revision


def test_hf_cache_follows_refs_main(tmp_path, monkeypatch, hf_llama):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snapshot = fake_cache_entry(tmp_path, "org/tiny", hf_llama[0], "abc123", pin=True)
    checkpoint = load_checkpoint("org/tiny")
    assert checkpoint.name == "org/tiny"
    assert checkpoint.source_files == [snapshot / "model.safetensors"]
    name = "model.layers.1.mlp.down_proj.weight"
    assert np.array_equal(checkpoint.load_tensor(name), hf_llama[1][name])


def test_hf_cache_uses_hf_home_and_the_only_snapshot(tmp_path, monkeypatch, hf_llama):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    snapshot = fake_cache_entry(tmp_path / "hub", "org/tiny", hf_llama[0], "def456", pin=False)
    assert load_checkpoint("org/tiny").source_files == [snapshot / "model.safetensors"]


def test_hf_cache_miss_names_id_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="org/absent") as error:
        load_checkpoint("org/absent")
    assert str(tmp_path) in str(error.value) and "Hub is not contacted" in str(error.value)


# --- tiny GGUF files --------------------------------------------------------------------------------------------

def llama_cpp_permute(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    half_head = weight.shape[0] // num_heads // 2
    return weight.reshape(num_heads, 2, half_head, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def gguf_name(hf_name: str) -> str:
    module, kind = hf_name.rsplit(".", 1)
    if module in GGUF_TOP_LEVEL:
        return f"{GGUF_TOP_LEVEL[module]}.{kind}"
    layer, module = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", module).groups()
    return f"blk.{layer}.{GGUF_PER_LAYER[module]}.{kind}"


def gguf_permute_heads(arch: str, name: str, config) -> int | None:
    if arch != "llama":
        return None
    return {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}.get(name.split(".")[-2])


def write_tiny_gguf(path: Path, arch: str, model, bpe: Tokenizer, extra_tensors: dict | None = None) -> None:
    config = model.config
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    write_gguf_tokenizer(writer, bpe)
    for hf_name, tensor in model.state_dict().items():
        name = gguf_name(hf_name)
        data = tensor.float().numpy()
        if heads := gguf_permute_heads(arch, name, config):
            data = llama_cpp_permute(data, heads)
        qtype = GGUF_TYPES.get(name.split(".", 2)[-1] if name.startswith("blk.") else name, QType.F32)
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    for name, data in (extra_tensors or {}).items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_gguf_tokenizer(writer: gguf.GGUFWriter, bpe: Tokenizer) -> None:
    vocab = bpe.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in ("<s>", "</s>") else 1 for token in tokens])
    writer.add_token_merges([" ".join(pair) for pair in json.loads(bpe.to_str())["model"]["merges"]])
    writer.add_bos_token_id(vocab["<s>"])
    writer.add_eos_token_id(vocab["</s>"])
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHAT_TEMPLATE)


@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen3"])
def tiny_gguf(request, tmp_path_factory, bpe):
    arch = request.param
    model = tiny_model(arch)
    path = tmp_path_factory.mktemp("gguf") / f"tiny-{arch}.gguf"
    write_tiny_gguf(path, arch, model, bpe)
    return arch, path, model, load_checkpoint(path)


def test_gguf_config_from_metadata(tiny_gguf):
    arch, path, model, checkpoint = tiny_gguf
    config = checkpoint.config
    assert (checkpoint.name, checkpoint.source_format, checkpoint.source_files) == (path.stem, "gguf", [path])
    assert config["architectures"] == [type(model).__name__] and config["model_type"] == arch
    assert (config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]) == (64, 2, 128)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, 2)
    assert config["head_dim"] == model.config.head_dim
    assert (config["vocab_size"], config["max_position_embeddings"]) == (300, 256)
    assert (config["rms_norm_eps"], config["rope_theta"], config["rope_scaling"]) == (1e-6, 10000.0, None)
    assert config["tie_word_embeddings"] is False
    assert config["attention_bias"] is (arch == "qwen2")
    assert (config["bos_token_id"], config["eos_token_id"]) == (0, 1)
    assert checkpoint.generation_config == {"bos_token_id": 0, "eos_token_id": 1}


def test_gguf_tensors_round_trip(tiny_gguf):
    arch, path, model, checkpoint = tiny_gguf
    expected = {name: t.numpy() for name, t in model.state_dict().items()}
    stored = {t.name: t for t in gguf.GGUFReader(path).tensors}
    assert sorted(checkpoint.tensor_names()) == sorted(expected)
    for name, original in expected.items():
        loaded = checkpoint.load_tensor(name)
        raw = stored[gguf_name(name)]
        assert loaded.dtype == np.float32 and loaded.shape == original.shape, name
        assert checkpoint.source_quantization(name) == raw.tensor_type.name
        heads = gguf_permute_heads(arch, gguf_name(name), model.config)
        as_stored = llama_cpp_permute(loaded, heads) if heads else loaded
        dequantized = gguf.quants.dequantize(raw.data, raw.tensor_type).reshape(original.shape)
        assert np.array_equal(as_stored, dequantized), name
        tolerance = QUANT_TOLERANCE[raw.tensor_type] * np.abs(original).max()
        assert np.abs(loaded - original).max() <= tolerance, name


def test_gguf_tokenizer_files(tiny_gguf, bpe):
    files = tiny_gguf[3].tokenizer_files
    config = json.loads(files["tokenizer_config.json"])
    assert config["chat_template"] == CHAT_TEMPLATE
    assert (config["bos_token"], config["eos_token"], config["add_bos_token"]) == ("<s>", "</s>", True)
    converted = Tokenizer.from_str(files["tokenizer.json"].decode())
    text = "hello world, the lazy fox"
    assert converted.encode(text).ids == [bpe.token_to_id("<s>")] + bpe.encode(text).ids


def llama_cpp_rope_factors(theta: float, head_dim: int, factor: float) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors for rope_type llama3."""
    low_freq_factor, high_freq_factor, old_context_len = 1.0, 4.0, 8192
    factors = []
    for freq in 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < old_context_len / high_freq_factor:
            factors.append(1)
        elif wavelen > old_context_len / low_freq_factor:
            factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, np.float32)


def test_gguf_llama3_rope_freqs_become_rope_scaling(tmp_path, bpe):
    model = tiny_model("llama")
    factors = llama_cpp_rope_factors(10000.0, 16, 8.0)
    write_tiny_gguf(tmp_path / "llama3.gguf", "llama", model, bpe, {"rope_freqs.weight": factors})
    checkpoint = load_checkpoint(tmp_path / "llama3.gguf")
    assert checkpoint.config["rope_scaling"] == {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    assert "rope_freqs.weight" not in checkpoint.tensor_names()


def test_gguf_unsupported_architecture(tmp_path):
    writer = gguf.GGUFWriter(tmp_path / "phi.gguf", "phi2")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match="architecture 'phi2' is not supported"):
        load_checkpoint(tmp_path / "phi.gguf")


# --- the real SmolLM2-135M-Instruct Q4_1 GGUF (a required install: fixture smollm2_gguf) ---------------------

@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    return load_checkpoint(smollm2_gguf)


@pytest.fixture(scope="module")
def smollm2_reference(smollm2_transformers) -> dict[str, np.ndarray]:
    return {name: t.numpy() for name, t in smollm2_transformers[1].items()}


def test_smollm2_config(smollm2):
    config = smollm2.config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (30, 576, 1536)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (9, 3, 64)
    assert (config["vocab_size"], config["max_position_embeddings"]) == (49152, 8192)
    assert (config["rms_norm_eps"], config["rope_theta"]) == (1e-5, 100000.0)
    assert config["tie_word_embeddings"] is True and "lm_head.weight" not in smollm2.tensor_names()
    assert len(smollm2.tensor_names()) == 2 + 30 * 9
    assert smollm2.generation_config == {"bos_token_id": 1, "eos_token_id": 2}


def test_smollm2_tensors_match_transformers(smollm2, smollm2_reference):
    assert sorted(smollm2.tensor_names()) == sorted(smollm2_reference)
    for name in smollm2.tensor_names():
        loaded, expected = smollm2.load_tensor(name), smollm2_reference[name]
        assert loaded.shape == expected.shape and np.abs(loaded - expected).max() < 1e-6, name
    assert smollm2.source_quantization("model.embed_tokens.weight") == "Q8_0"
    assert smollm2.source_quantization("model.layers.0.self_attn.q_proj.weight") == "Q4_1"
    assert smollm2.source_quantization("model.norm.weight") == "F32"


def test_smollm2_tokenizer_files(smollm2):
    config = json.loads(smollm2.tokenizer_files["tokenizer_config.json"])
    assert "<|im_start|>assistant" in config["chat_template"]
    assert (config["bos_token"], config["eos_token"], config["add_bos_token"]) == ("<|im_start|>", "<|im_end|>", False)
    tokenizer = Tokenizer.from_str(smollm2.tokenizer_files["tokenizer.json"].decode())
    assert tokenizer.get_vocab_size() == 49152

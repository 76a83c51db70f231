"""A local Hugging Face model directory: config.json, safetensors weights, tokenizer files."""

import json
from pathlib import Path

from ..checkpoint import Checkpoint, CheckpointError
from .safetensors_store import SafetensorsStore, tensor_keys
from .tokenizer_files import read_tokenizer_files

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
REQUIRED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_hf_dir(directory: Path, name: str | None = None) -> Checkpoint:
    """Load a HF directory; `name` defaults to the directory name (the HF cache passes the model id)."""
    directory = Path(directory).absolute()
    config = _read_config(directory)
    config.update(_top_level_rope_keys(config))
    files_by_name = _weight_files(directory)
    config["tie_word_embeddings"] = _is_tied(config, files_by_name, directory)
    if config["tie_word_embeddings"]:
        files_by_name.pop("lm_head.weight", None)
    return Checkpoint(
        name=name or directory.resolve().name,
        config=config,
        tokenizer_files=_tokenizer_files(directory),
        generation_config=_read_optional_json(directory / "generation_config.json"),
        source_files=sorted(set(files_by_name.values())),
        source_format="hf",
        store=SafetensorsStore(files_by_name),
    )


def _read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if path.is_file():
        return _read_json(path)
    ggufs = sorted(p.name for p in directory.glob("*.gguf"))
    hint = f"; it holds GGUF files, pass one of them instead: {', '.join(ggufs)}" if ggufs else ""
    raise CheckpointError(f"{directory} is not a Hugging Face model directory: no config.json{hint}")


def _top_level_rope_keys(config: dict) -> dict:
    """transformers >= 5 writes rope_parameters; older configs, and the compiler, use rope_theta and rope_scaling."""
    rope = config.get("rope_parameters") or {}
    if "rope_theta" in config or "rope_theta" not in rope:
        return {}
    scaling = {key: value for key, value in rope.items() if key != "rope_theta"}
    is_default = scaling.get("rope_type") == "default"
    return {"rope_theta": rope["rope_theta"], "rope_scaling": None if is_default else scaling}


def _weight_files(directory: Path) -> dict[str, Path]:
    index = directory / INDEX_FILE
    if index.is_file():
        return _sharded_weight_files(index)
    single = directory / SINGLE_FILE
    if single.is_file():
        return dict.fromkeys(tensor_keys(single), single)
    bins = sorted(p.name for p in directory.glob("*.bin"))
    if bins:
        raise CheckpointError(
            f"{directory} holds PyTorch .bin weights ({', '.join(bins)}) and no {SINGLE_FILE}: .bin is not supported, "
            "convert the checkpoint to safetensors (transformers: from_pretrained(...).save_pretrained(...))"
        )
    raise CheckpointError(f"{directory} has no weights: neither {SINGLE_FILE} nor {INDEX_FILE}")


def _sharded_weight_files(index: Path) -> dict[str, Path]:
    weight_map = _read_json(index).get("weight_map")
    if not weight_map:
        raise CheckpointError(f"{index} has no weight_map")
    missing = sorted({shard for shard in weight_map.values() if not (index.parent / shard).is_file()})
    if missing:
        raise CheckpointError(f"{index} lists shards that are missing from {index.parent}: {', '.join(missing)}")
    return {name: index.parent / shard for name, shard in weight_map.items()}


def _is_tied(config: dict, files_by_name: dict[str, Path], directory: Path) -> bool:
    has_head = "lm_head.weight" in files_by_name
    tied = config.get("tie_word_embeddings", not has_head)
    if not tied and not has_head:
        raise CheckpointError(f"{directory}: config.json says tie_word_embeddings false but there is no lm_head.weight")
    return tied


def _tokenizer_files(directory: Path) -> dict[str, bytes]:
    files = read_tokenizer_files(directory)
    missing = [name for name in REQUIRED_TOKENIZER_FILES if name not in files]
    if missing:
        raise CheckpointError(f"{directory} has no {' or '.join(missing)} (a fast tokenizer's files are required)")
    return files


def _read_optional_json(path: Path) -> dict:
    return _read_json(path) if path.is_file() else {}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err

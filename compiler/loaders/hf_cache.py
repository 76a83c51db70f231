"""An HF model id resolved from the local Hugging Face cache; the Hub is never contacted."""

import os
from pathlib import Path

from ..checkpoint import Checkpoint, CheckpointError
from .hf_dir import load_hf_dir


def load_hf_cache(model_id: str) -> Checkpoint:
    return load_hf_dir(snapshot_dir(model_id), name=model_id)


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps models: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface" / "hub"


def snapshot_dir(model_id: str) -> Path:
    """The snapshot refs/main points at, else the newest snapshot."""
    cache = hub_cache_dir()
    repo = cache / f"models--{model_id.replace('/', '--')}"
    snapshot = _main_snapshot(repo) or _newest_snapshot(repo)
    if snapshot is None:
        raise CheckpointError(
            f"model {model_id!r} is not in the local Hugging Face cache (searched {repo}); "
            f"the Hub is not contacted: download it elsewhere (huggingface-cli download {model_id}) "
            "or pass a local path"
        )
    return snapshot


def _main_snapshot(repo: Path) -> Path | None:
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    snapshot = repo / "snapshots" / ref.read_text().strip()
    return snapshot if snapshot.is_dir() else None


def _newest_snapshot(repo: Path) -> Path | None:
    snapshots = [path for path in (repo / "snapshots").glob("*") if path.is_dir()]
    return max(snapshots, key=lambda path: path.stat().st_mtime, default=None)

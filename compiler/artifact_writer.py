"""Write an artifact directory atomically: build in a sibling temp dir, checksum, then swap into place."""
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..artifact_layout import GENERATION_CONFIG, MANIFEST, SOURCE_DIR, TOKENIZER_DIR, sha256_file
from .checkpoint import Checkpoint


def checksums(root: Path, names: list[str]) -> dict[str, str]:
    return {name: sha256_file(root / name) for name in names}


@contextmanager
def staging_dir(output: Path) -> Iterator[Path]:
    """Yield a temp dir next to `output`; on success it replaces `output`, on failure it is removed."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.partial-{os.getpid()}-{time.monotonic_ns()}")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_into_place(staging, output)


def _swap_into_place(staging: Path, output: Path) -> None:
    previous = output.with_name(f".{output.name}.previous-{os.getpid()}")
    if output.exists():
        os.replace(output, previous)
    os.replace(staging, output)
    shutil.rmtree(previous, ignore_errors=True)


def write_tokenizer(out: Path, checkpoint: Checkpoint) -> list[str]:
    (out / TOKENIZER_DIR).mkdir()
    for name, data in checkpoint.tokenizer_files.items():
        (out / TOKENIZER_DIR / name).write_bytes(data)
    (out / GENERATION_CONFIG).write_text(json.dumps(checkpoint.generation_config, indent=2))
    return [f"{TOKENIZER_DIR}/{name}" for name in checkpoint.tokenizer_files] + [GENERATION_CONFIG]


def keep_source(out: Path, checkpoint: Checkpoint) -> str:
    """Copy what re-quantization needs; return the path the compiler reloads."""
    target = out / SOURCE_DIR
    target.mkdir()
    files = list(checkpoint.source_files)
    if checkpoint.source_format == "hf":
        root = files[0].parent
        files = [p for p in root.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".model")]
    for path in files:
        shutil.copyfile(path, target / path.name)
    return SOURCE_DIR if checkpoint.source_format == "hf" else f"{SOURCE_DIR}/{files[0].name}"


def write_manifest(out: Path, manifest: dict) -> None:
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))

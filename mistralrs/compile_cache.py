"""`serve -m CHECKPOINT`: compile once into a cache directory keyed by what determines the artifact."""
import hashlib
import logging
import os
from pathlib import Path

from . import __version__
from .artifact_layout import MANIFEST, sha256_file

logger = logging.getLogger("mistralrs.cache")


def cache_root() -> Path:
    base = os.environ.get("MISTRALRS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mistralrs-compile"
    return Path(base)


def cached_artifact(model: str, isq: str | None, backend: str, target: str, root: Path | None = None) -> Path:
    """Return the cached artifact for these inputs, compiling it first if it is not there yet."""
    from .compiler.compile import CompileOptions, compile_checkpoint
    from .compiler.loaders import load_checkpoint

    checkpoint = load_checkpoint(model)
    sources = "".join(sha256_file(p) for p in checkpoint.source_files)
    key = hashlib.sha256(f"{sources}|{isq}|{backend}|{target}|{__version__}".encode()).hexdigest()[:20]
    path = (root or cache_root()) / f"{Path(checkpoint.name).name}-{(isq or 'f32').lower()}-{key}"
    if (path / MANIFEST).is_file():
        logger.info("using cached artifact %s", path)
        return path
    logger.info("compiling %s into the cache at %s", model, path)
    compile_checkpoint(CompileOptions(model=model, output=path, isq=isq, backend=backend, target=target), checkpoint)
    return path

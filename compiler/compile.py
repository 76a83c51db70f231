"""compile_checkpoint: checkpoint -> graph -> passes (fusion, ISQ) -> backend lowering -> artifact."""
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from ..artifact_layout import FORMAT_VERSION
from ..hardware import TargetHardware
from ..model_zoo.config import DecoderConfig
from ..model_zoo.graph import build_decoder_graph
from ..artifact_layout import sha256_file
from .artifact_writer import checksums, keep_source, staging_dir, write_manifest, write_tokenizer
from .checkpoint import Checkpoint
from .isq import IsqScheme, parse_isq
from .loaders import load_checkpoint
from .pipeline import PassRecord, run_passes
from .targets import get_backend

logger = logging.getLogger("mistralrs.compiler")


@dataclass(slots=True)
class CompileOptions:
    model: str
    output: Path
    isq: str | None = None
    backend: str = "onnxruntime"
    target: str = "cpu"
    keep_source: bool = True
    disabled_passes: frozenset[str] = frozenset()
    backend_options: dict = field(default_factory=dict)
    progress: bool = True


def compile_checkpoint(options: CompileOptions, checkpoint: Checkpoint | None = None) -> dict:
    """Compile and return the manifest written into `options.output`; `checkpoint`: `options.model`, already loaded."""
    start = time.perf_counter()
    scheme = parse_isq(options.isq)
    backend = get_backend(options.backend, **options.backend_options)
    target = TargetHardware.parse(options.target)
    backend.check_target(target)
    target = backend.resolve_target(target)
    checkpoint = checkpoint or load_checkpoint(options.model)
    cfg = DecoderConfig.from_hf(checkpoint.config)
    logger.info("compiling %s (%s, %d layers) isq=%s backend=%s target=%s",
                checkpoint.name, cfg.architecture, cfg.num_layers, scheme and scheme.name, backend.name, target.label)
    with staging_dir(Path(options.output)) as out:
        if backend.consumes_checkpoint:
            records, graph_files = [], backend.lower_checkpoint(checkpoint, cfg, scheme, out)
        else:
            graph = _build_graph(checkpoint, cfg, options.progress)
            records = _run_passes(graph, scheme, options)
            graph_files = _lower(backend, graph, out)
        files = graph_files + write_tokenizer(out, checkpoint)
        kept = keep_source(out, checkpoint) if options.keep_source else None
        manifest = _manifest(checkpoint, cfg, scheme, records, backend, target, out, files, kept, graph_files)
        manifest["compile_seconds"] = round(time.perf_counter() - start, 2)
        write_manifest(out, manifest)
    logger.info("compiled %s in %.1fs: %.1f MB servable", options.output, manifest["compile_seconds"],
                manifest["servable_bytes"] / 1e6)
    return manifest


def _build_graph(checkpoint: Checkpoint, cfg: DecoderConfig, progress: bool):
    with tqdm(total=cfg.num_layers, desc="load weights", unit="layer", disable=not progress) as bar:
        graph = build_decoder_graph(cfg, checkpoint.load_tensor, on_layer=lambda _: bar.update())
    logger.info("graph built: %d nodes, %.1f MB of fp32 weights", len(graph.nodes), graph.weight_bytes() / 1e6)
    return graph


def _run_passes(graph, scheme: IsqScheme | None, options: CompileOptions) -> list[PassRecord]:
    with tqdm(desc=f"quantize {scheme.name}" if scheme else "quantize", unit="tensor",
              disable=not (options.progress and scheme)) as bar:
        def on_weight(total: int) -> None:
            bar.total = total
            bar.update()

        return run_passes(graph, scheme, set(options.disabled_passes), on_weight=on_weight)


def _lower(backend, graph, out: Path) -> list[str]:
    start = time.perf_counter()
    files = backend.lower(graph, out)
    logger.info("lowered to %s in %.1fs: %s", backend.name, time.perf_counter() - start, ", ".join(files))
    return files


def _manifest(checkpoint, cfg, scheme, records, backend, target, out, files, kept, graph_files) -> dict:
    sums = checksums(out, files)
    kept_files = sorted(str(p.relative_to(out)) for p in (out / "source").rglob("*") if p.is_file()) if kept else []
    return {
        "format_version": FORMAT_VERSION,
        "compiler_version": __version__,
        "created_unix": int(time.time()),
        "compiled_on": platform.node(),
        "model": {"name": checkpoint.name, "architecture": cfg.architecture, "config": cfg.to_dict(),
                  "max_context": cfg.max_position_embeddings},
        "source": {
            "format": checkpoint.source_format,
            "files": [{"name": p.name, "sha256": sha256_file(p)} for p in checkpoint.source_files],
            "kept_for_requantization": kept,
            "kept_files": checksums(out, kept_files),
        },
        "isq": _scheme_dict(scheme),
        "passes": [{"name": r.name, "rewrites": r.rewrites, "seconds": round(r.seconds, 3)} for r in records],
        "backend": _backend_section(backend, graph_files),
        "target": target.to_dict(),
        "files": sums,
        "servable_bytes": sum((out / f).stat().st_size for f in files),
        "source_bytes": sum((out / f).stat().st_size for f in kept_files),
    }


def _backend_section(backend, graph_files: list[str]) -> dict:
    section = {"name": backend.name, "version": backend.version(), "options": backend.options(),
               "graph_files": graph_files}
    details = backend.details()
    return section | {"details": details} if details else section


def _scheme_dict(scheme: IsqScheme | None) -> dict | None:
    if scheme is None:
        return None
    return {"name": scheme.name, "bits": scheme.bits, "block_size": scheme.block_size, "symmetric": scheme.symmetric,
            "float_zero_point": scheme.float_zero_point, "refine": scheme.refine}

"""The `mistralrs` command: `compile` a checkpoint into an artifact, `serve` an artifact over HTTP."""
import argparse
import json
import logging
import os
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format=LOG_FORMAT, stream=sys.stderr)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mistralrs", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="{compile,serve,inspect}")
    _add_compile(commands.add_parser("compile", help="compile a checkpoint into an artifact directory"))
    _add_serve(commands.add_parser("serve", help="serve an artifact (or a checkpoint, compiled on the fly)"))
    inspect = commands.add_parser("inspect", help="verify an artifact and print its manifest")
    inspect.add_argument("artifact")
    inspect.set_defaults(run=_inspect)
    return parser


def _add_compile(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help="GGUF file, HF model directory, or HF model id in the local cache")
    p.add_argument("-o", "--output", required=True, help="artifact directory to write (replaced atomically)")
    p.add_argument("--isq", default=None, help="ISQ type (Q4K, Q4_0, Q4_1, Q8_0, Q8_1, 4, 8); default: no quantization")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime (default), tvm or inductor")
    p.add_argument("--target", default="cpu",
                   help="cpu, cpu:<arch>[+isa...], cuda:sm_NN (tvm: cpu compiles for this CPU's x86-64 level, "
                        "cpu:x86_64+avx2 for x86-64-v3; cuda cross-compiles without a GPU)")
    p.add_argument("--matmul-accuracy", choices=["fp32", "mixed", "int8"], default="fp32",
                   help="onnxruntime: int8 activations (VNNI) in quantized matmuls: none, for 8-bit weights only, or all")
    p.add_argument("--decode", choices=["onnxruntime", "native"], default="onnxruntime",
                   help="onnxruntime: what runs decode steps: the ONNX graph, or compiled native code (x86-64 with "
                        "AVX-512 VNNI, int8 activations, needs a C compiler to compile)")
    p.add_argument("--no-keep-source", action="store_true", help="do not keep the source weights (disables /re_isq)")
    p.add_argument("--disable-pass", action="append", default=[], metavar="PASS", help="skip a fusion pass (repeatable)")
    p.add_argument("--no-spot-check", action="store_true", help="skip the final parity spot check")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--progress-jsonl", action="store_true", help="print each compile event as a JSON line on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    p.set_defaults(run=_compile)


def _add_serve(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument("--artifact", help="a compiled artifact directory")
    source.add_argument("-m", "--model", help="a checkpoint to compile into the cache and serve")
    p.add_argument("--isq", default=None, help="with -m: ISQ type (default: none; Q4K for the bundled default model)")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--target", default="cpu")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("-p", "--port", type=int, default=1234)
    p.add_argument("--max-batch", type=int, default=16, help="sequences decoded together (KV cache slots)")
    p.add_argument("--max-seq-len", type=int, default=None, help="max tokens per sequence (default: min(model, 4096))")
    p.add_argument("--max-waiting", type=int, default=256, help="queued requests before answering 429")
    p.add_argument("--no-prefix-sharing", dest="prefix_sharing", action="store_false",
                   help="prefill every prompt in full instead of copying the KV rows it shares with a running sequence")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="compute threads for the backend")
    p.add_argument("--http-threads", type=int, default=64, help="concurrent HTTP connections (each stream holds one)")
    p.add_argument("--api-key", default=os.environ.get("MISTRALRS_API_KEY"), help="require this bearer token")
    p.set_defaults(run=_serve)


def _compile(args) -> int:
    from .compiler.compile import CompileOptions, compile_checkpoint
    from .compiler.spot_check import spot_check

    if args.progress_jsonl:
        _log_events_as_jsonl("mistralrs.compiler")
    if args.decode != "onnxruntime" and args.backend != "onnxruntime":
        print(f"error: --decode {args.decode} is an onnxruntime backend option, not {args.backend}'s", file=sys.stderr)
        return 2
    options = CompileOptions(model=args.model, output=args.output, isq=args.isq, backend=args.backend,
                             target=args.target, keep_source=not args.no_keep_source,
                             disabled_passes=frozenset(args.disable_pass), progress=not args.quiet,
                             backend_options={"matmul_accuracy": args.matmul_accuracy,
                                              **({"decode": args.decode} if args.decode != "onnxruntime" else {})})
    manifest = compile_checkpoint(options)
    summary = _summary(manifest)
    if not args.no_spot_check:
        summary["spot_check"] = spot_check(args.model, args.output)
    print(json.dumps(summary, indent=2) if args.json else _summary_text(summary))
    return 0


def _log_events_as_jsonl(logger_name: str) -> None:
    class JsonLines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(json.dumps({"event": record.getMessage()}), flush=True)

    logger = logging.getLogger(logger_name)
    logger.addHandler(JsonLines())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _summary(manifest: dict) -> dict:
    return {
        "artifact_model": manifest["model"]["name"],
        "isq": (manifest["isq"] or {}).get("name", "F32"),
        "backend": manifest["backend"]["name"],
        "target": manifest["target"],
        "servable_mb": round(manifest["servable_bytes"] / 1e6, 1),
        "kept_source_mb": round(manifest["source_bytes"] / 1e6, 1),
        "compile_seconds": manifest["compile_seconds"],
        "passes": [f"{p['name']}({p['rewrites']})" for p in manifest["passes"]],
    }


def _summary_text(summary: dict) -> str:
    return "\n".join(f"{key:>16}: {value}" for key, value in summary.items())


def _serve(args) -> int:
    from .api.server import run_server

    from .runtime.artifact import open_artifact
    from .runtime.engine import Engine, EngineConfig

    # verified once, here, so a bad checksum or the wrong hardware fails before gunicorn starts
    artifact = open_artifact(args.artifact or _compiled_model(args))
    config = EngineConfig(max_batch=args.max_batch, max_seq_len=args.max_seq_len, max_waiting=args.max_waiting,
                          threads=args.threads, prefix_sharing=args.prefix_sharing)
    run_server(lambda: Engine(artifact, config), args.host, args.port, threads=args.http_threads, api_key=args.api_key)
    return 0


def _compiled_model(args) -> str:
    from .compile_cache import cached_artifact
    from .default_model import DEFAULT_ISQ, default_model_path

    model, isq = args.model, args.isq
    if model is None:
        model, isq = str(default_model_path()), isq or DEFAULT_ISQ
    return str(cached_artifact(model, isq, args.backend, args.target))


def _inspect(args) -> int:
    from .runtime.artifact import open_artifact

    artifact = open_artifact(args.artifact)
    print(json.dumps(artifact.manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""TVM CUDA artifacts, compiled here on the CPU machine, checked on the GPU machine (which has no TVM).

Here:   python bench/tvm_gpu.py prepare [--smollm2]
        compiles a tiny random Llama (and with --smollm2 SmolLM2-135M-Instruct Q4K) for --target cuda:sm_90 and for
        cpu, stores the cpu artifact's 32 greedy tokens (and the tiny one's logits) beside the CUDA artifact, and
        builds the trimmed TVM runtime plus serving wheels (scripts/tvm_runtime_bundle.py). Everything lands in
        build/tvm-gpu (ignored by git). SmolLM2 (about 120 MB) does not fit one 64 MiB carry: it is tarred and split
        into build/tvm-gpu-smollm2-<n>/, one carry each, reassembled by `check`.
There:  python bench/tvm_gpu.py check      (see README's TVM section for the run command and carry paths)
        loads each CUDA artifact with the trimmed runtime, runs prefill + 32 greedy steps, compares the tokens with
        the cpu artifact's, then serves one artifact with `mistralrs serve --artifact` and asks it one chat through
        the openai SDK. Prints a JSON report (also written to $OUT/tvm_gpu.json when OUT is set).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "build" / "tvm-gpu"
PART_PREFIX = "tvm-gpu-smollm2-"
PART_BYTES = 60 * 2**20
STEPS = 32
TINY_PROMPT = "hello world, the quick brown fox"
SMOLLM2_PROMPT = "The capital of France is"


def greedy(executor, prompt: list[int], steps: int = STEPS) -> tuple[list[int], np.ndarray, float]:
    """(steps + 1 greedy tokens, their logits, decode tok/s)."""
    rows = [executor.forward(0, np.array([prompt]), np.array([0]))[0]]
    tokens = [int(rows[0].argmax())]
    start = time.perf_counter()
    for step in range(steps):
        rows.append(executor.forward(0, np.array([[tokens[-1]]]), np.array([len(prompt) + step]))[0])
        tokens.append(int(rows[-1].argmax()))
    return tokens, np.stack(rows), steps / (time.perf_counter() - start)


# -- here: prepare ---------------------------------------------------------------------------------------------

def prepare(smollm2: bool) -> None:
    from mistralrs.compiler.compile import CompileOptions, compile_checkpoint
    from mistralrs.runtime.artifact import open_artifact
    from mistralrs.runtime.executors import create_executor
    from mistralrs.runtime.tokenizer import Tokenizer

    sys.path.insert(0, str(ROOT / "tests" / "compiler"))
    from tiny_models import SPECS, random_model, save_checkpoint, train_tokenizer

    BUNDLE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"tiny": (Path(tmp) / "tiny-hf", None, TINY_PROMPT)}  # the parity tests' tiny tied Llama
        save_checkpoint(models["tiny"][0], random_model(SPECS["llama-tied"], seed=0), train_tokenizer())
        if smollm2:
            from mistralrs.default_model import default_model_path

            models["smollm2"] = (default_model_path(), "Q4K", SMOLLM2_PROMPT)
        for name, (model, isq, text) in models.items():
            cpu = Path(tmp) / f"{name}-cpu"
            cuda = BUNDLE / "tiny-cuda" if name == "tiny" else Path(tmp) / "smollm2-cuda"  # smollm2: split below
            for target, out in (("cpu", cpu), ("cuda:sm_90", cuda)):
                compile_checkpoint(CompileOptions(model=str(model), output=out, isq=isq, backend="tvm", target=target,
                                                  keep_source=False, progress=False))
            artifact = open_artifact(cpu)
            prompt = Tokenizer.from_dir(artifact.tokenizer_dir).encode(text, add_special_tokens=False)
            tokens, logits, _ = greedy(create_executor(artifact, 1, 128, threads=2), prompt)
            expected = {"prompt": prompt, "tokens": tokens, "logits": logits.tolist() if name == "tiny" else None}
            (cuda / "expected.json").write_text(json.dumps(expected))
            if name == "smollm2":
                _split(cuda)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "tvm_runtime_bundle.py"), "--out", str(BUNDLE),
                    "--serving"], check=True)
    print(f"{BUNDLE}: {_mb(BUNDLE):.1f} MB" + "".join(f"; {p}: {_mb(p):.1f} MB" for p in _parts()))


def _split(artifact: Path) -> None:
    for old in _parts():
        shutil.rmtree(old)
    with tempfile.TemporaryFile() as tar:
        with tarfile.open(fileobj=tar, mode="w") as archive:
            archive.add(artifact, arcname="smollm2-cuda")
        tar.seek(0)
        index = 0
        while chunk := tar.read(PART_BYTES):
            part = BUNDLE.parent / f"{PART_PREFIX}{index}"
            part.mkdir()
            (part / "chunk").write_bytes(chunk)
            index += 1


def _parts() -> list[Path]:
    return sorted(BUNDLE.parent.glob(PART_PREFIX + "*"), key=lambda p: int(p.name.removeprefix(PART_PREFIX)))


def _mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


# -- there: check ----------------------------------------------------------------------------------------------

def check() -> dict:
    from mistralrs.runtime.artifact import open_artifact
    from mistralrs.runtime.executors import create_executor

    report = {"device": _device_name()}
    artifacts = {"tiny": BUNDLE / "tiny-cuda"}
    if _parts():
        artifacts["smollm2"] = _join_parts(Path(tempfile.mkdtemp()))
    for name, path in artifacts.items():
        expected = json.loads((path / "expected.json").read_text())
        try:
            start = time.perf_counter()
            executor = create_executor(open_artifact(path), 4, 256, threads=4)
            load_s = time.perf_counter() - start
            tokens, logits, tok_s = greedy(executor, expected["prompt"])
            result = {"load_s": round(load_s, 1), "decode_tok_s": round(tok_s, 1), "tokens": tokens,
                      "tokens_equal_cpu": tokens == expected["tokens"],
                      "leading_tokens_equal": next((i for i, (a, b) in enumerate(zip(tokens, expected["tokens"]))
                                                    if a != b), len(tokens))}
            if expected["logits"] is not None:
                result["max_abs_logit_diff_vs_cpu"] = float(np.abs(logits - np.array(expected["logits"])).max())
            del executor
        except Exception as e:  # noqa: BLE001  (report every stage)
            result = {"error": f"{type(e).__name__}: {e}"}
        report[name] = result
    report["serve"] = _serve(artifacts["smollm2" if "smollm2" in artifacts else "tiny"])
    return report


def _join_parts(dest: Path) -> Path:
    with tempfile.TemporaryFile() as tar:
        for part in _parts():
            tar.write((part / "chunk").read_bytes())
        tar.seek(0)
        with tarfile.open(fileobj=tar) as archive:
            archive.extractall(dest, filter="data")
    return dest / "smollm2-cuda"


def _serve(artifact: Path) -> dict:
    import openai

    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from live_server import LiveServer

    log = Path(tempfile.mkdtemp()) / "server.log"
    args = ["--artifact", str(artifact), "--threads", "4", "--max-batch", "4", "--max-seq-len", "256"]
    server = LiveServer(args, log)
    try:
        server.wait_until_healthy(300)
        with openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="EMPTY", max_retries=0, timeout=120) as client:
            response = client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": "What is the capital of France?"}],
                temperature=0, max_tokens=16)
        return {"artifact": artifact.name, "content": response.choices[0].message.content,
                "usage": response.usage.model_dump()}
    except Exception as e:  # noqa: BLE001
        return {"artifact": artifact.name, "error": f"{type(e).__name__}: {e}", "log": server.log(4000)}
    finally:
        server.stop()


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["prepare", "check"])
    parser.add_argument("--smollm2", action="store_true", help="prepare: also SmolLM2-135M-Instruct Q4K, in parts")
    args = parser.parse_args()
    if args.stage == "prepare":
        prepare(args.smollm2)
        return 0
    report = check()
    text = json.dumps(report, indent=2)
    print(text)
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "tvm_gpu.json").write_text(text)
    ok = all(report[k].get("tokens_equal_cpu") for k in ("tiny", "smollm2") if k in report)
    return 0 if ok and "error" not in report["serve"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Compile SmolLM2 at each ISQ level; print compile time, peak memory and artifact size (markdown + JSON)."""
import argparse
import json
import platform
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mistralrs.default_model import default_model_path

LEVELS = ["F32", "Q8_0", "Q4_1", "Q4K", "Q4_0"]


def compile_once(model: Path, isq: str, out: Path) -> dict:
    command = [sys.executable, "-m", "mistralrs.cli", "compile", "-m", str(model), "-o", str(out), "--isq", isq,
               "--json", "-q", "--no-spot-check"]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS, in KiB on Linux
    if status != 0:
        raise RuntimeError(f"compile {isq} failed with status {status}")
    wall = time.perf_counter() - start
    summary = json.loads(stdout)
    return {"isq": isq, "wall_s": round(wall, 1), "compile_s": summary["compile_seconds"],
            "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "servable_mb": summary["servable_mb"], "kept_source_mb": summary["kept_source_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", nargs="*", default=LEVELS)
    args = parser.parse_args()
    model = default_model_path()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for isq in args.levels:
            rows.append(compile_once(model, isq, Path(tmp) / isq))
    print("| ISQ | wall s (incl. process start) | compile s | peak RSS MB | servable MB | kept source MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['isq']} | {r['wall_s']} | {r['compile_s']} | {r['peak_rss_mb']} | {r['servable_mb']} | {r['kept_source_mb']} |")
    result = {"bench": "compile", "model": model.name, "machine": platform.processor() or platform.machine(),
              "unix_time": int(time.time()), "rows": rows}
    out = Path(__file__).parent / "results" / f"compile-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

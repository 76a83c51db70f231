"""/re_isq under load: aggregate decode tok/s of running streams before vs during a Q8_0 -> Q4K recompilation."""
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from live_server import LiveServer  # noqa: E402

from mistralrs.compiler.compile import CompileOptions, compile_checkpoint  # noqa: E402
from mistralrs.default_model import default_model_path  # noqa: E402

STREAMS = 4


def stream_forever(base_url: str, stamps: list, stop: threading.Event) -> None:
    body = {"model": "default", "messages": [{"role": "user", "content": "Tell me a very long story."}],
            "max_tokens": 1900, "temperature": 0, "ignore_eos": True, "stream": True}
    while not stop.is_set():
        with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=600) as response:
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("data: {"):
                    stamps.append(time.monotonic())


def rate(stamps: list, start: float, end: float) -> float:
    return sum(start <= t < end for t in stamps) / (end - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "smollm2"
        compile_checkpoint(CompileOptions(model=str(default_model_path()), output=artifact, isq="Q8_0", progress=False))
        server = LiveServer(["--artifact", str(artifact), "--threads", "2", "--max-seq-len", "2048"], Path(tmp) / "log")
        try:
            server.wait_until_healthy(120)
            stamps, stop = [], threading.Event()
            threads = [threading.Thread(target=stream_forever, args=(server.base_url, stamps, stop)) for _ in range(STREAMS)]
            for t in threads:
                t.start()
            time.sleep(10)  # warm-up: all streams decoding
            before_start = time.monotonic()
            time.sleep(20)
            job = httpx.post(f"{server.base_url}/re_isq", json={"ggml_type": "Q4K"}).json()
            during_start = time.monotonic()
            while (status := httpx.get(f"{server.base_url}/re_isq/{job['id']}").json())["status"] not in ("done", "failed"):
                time.sleep(0.5)
            during_end = time.monotonic()
            stop.set()
            result = {"bench": "re_isq", "streams": STREAMS, "job": status,
                      "recompile_seconds": round(during_end - during_start, 1),
                      "tok_s_before": round(rate(stamps, before_start, during_start), 1),
                      "tok_s_during": round(rate(stamps, during_start, during_end), 1)}
            result["during_over_before"] = round(result["tok_s_during"] / result["tok_s_before"], 3)
        finally:
            server.stop()
    out = Path(__file__).parent / "results" / f"reisq-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

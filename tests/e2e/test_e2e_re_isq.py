"""/re_isq on the real server: recompile Q8_0 -> Q4K while 8 streams run; a broken recompilation changes nothing."""
import json
import shutil
import threading
import time

import httpx
import openai
import pytest

from live_server import LiveServer, metrics
from mistralrs.runtime.artifact import open_artifact

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
JOB_DEADLINE_S = 300


@pytest.fixture
def served_q8(smollm2_artifact, tmp_path):
    """A private copy of the Q8_0 artifact (re_isq rewrites it in place) served on a free port."""
    artifact = tmp_path / "smollm2"
    shutil.copytree(smollm2_artifact("Q8_0"), artifact)
    server = LiveServer(["--artifact", str(artifact), "--threads", "2", "--max-batch", "8", "--max-seq-len", "2048"],
                        tmp_path / "server.log")
    try:
        server.wait_until_healthy(120)
        yield server, artifact
    finally:
        server.stop()


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="EMPTY", max_retries=0, timeout=600)


def _stream(client, results: list, index: int, started: threading.Event) -> None:
    chunks, finish = [], None
    stream = client.chat.completions.create(model="default", messages=STORY, temperature=0, max_tokens=900,
                                            stream=True, extra_body={"ignore_eos": True})
    for chunk in stream:
        started.set()
        if chunk.choices:
            chunks.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    results[index] = ("".join(chunks), finish, time.monotonic())


def _wait_for_job(base_url: str, job_id: str) -> dict:
    deadline = time.monotonic() + JOB_DEADLINE_S
    while time.monotonic() < deadline:
        job = httpx.get(f"{base_url}/re_isq/{job_id}", timeout=10).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(1)
    raise TimeoutError(f"re_isq job {job_id} still running after {JOB_DEADLINE_S} s")


def _models_card(base_url: str) -> dict:
    return httpx.get(f"{base_url}/v1/models", timeout=10).json()["data"][1]


def test_re_isq_while_streaming_swaps_without_losing_a_stream(served_q8):
    server, artifact = served_q8
    client = _client(server)
    results, started = [None] * 8, [threading.Event() for _ in range(8)]
    threads = [threading.Thread(target=_stream, args=(client, results, i, started[i])) for i in range(8)]
    for thread in threads:
        thread.start()
    assert all(event.wait(120) for event in started)

    answer = httpx.post(f"{server.base_url}/re_isq", json={"ggml_type": "q4k"}, timeout=10)
    assert answer.status_code == 202, answer.text
    conflict = httpx.post(f"{server.base_url}/re_isq", json={"ggml_type": "8"}, timeout=10)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "re_isq_in_progress"
    job = _wait_for_job(server.base_url, answer.json()["id"])
    swapped_at = time.monotonic()
    assert job["status"] == "done", job

    for thread in threads:
        thread.join(600)
    assert all(r is not None for r in results)
    for text, finish, _ in results:
        assert finish == "length" and len(text) > 200 and "\ufffd" not in text
    assert sum(done_at > swapped_at for _, _, done_at in results) >= 4, "streams should outlive the recompilation"
    counters = metrics(server.base_url)
    assert counters["recompilations"] == 1 and counters["model_swaps"] == 1
    assert counters["recomputed_sequences"] >= 4

    assert _models_card(server.base_url)["isq"] == "Q4K"
    reply = client.chat.completions.create(model="default", messages=QUESTION, temperature=0, max_tokens=24)
    assert "Paris" in reply.choices[0].message.content
    on_disk = open_artifact(artifact)  # verifies every checksum
    assert on_disk.manifest["isq"]["name"] == "Q4K"


def test_failed_recompilation_keeps_serving_the_old_model(served_q8):
    server, artifact = served_q8
    manifest = json.loads((artifact / "manifest.json").read_text())
    for name in manifest["source"]["kept_files"]:
        (artifact / name).unlink()

    bad = httpx.post(f"{server.base_url}/re_isq", json={"ggml_type": "Q9_9"}, timeout=10)
    assert bad.status_code == 400 and "Q4K" in bad.json()["error"]["message"]
    answer = httpx.post(f"{server.base_url}/re_isq", json={"ggml_type": "Q4K"}, timeout=10)
    job = _wait_for_job(server.base_url, answer.json()["id"])
    assert job["status"] == "failed" and "missing" in job["error"], job

    assert _models_card(server.base_url)["isq"] == "Q8_0"
    reply = _client(server).chat.completions.create(model="default", messages=QUESTION, temperature=0, max_tokens=24)
    assert "Paris" in reply.choices[0].message.content
    assert metrics(server.base_url)["recompilations_failed"] == 1

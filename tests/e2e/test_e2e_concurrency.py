"""Continuous batching on the real server: concurrent streams match their solo texts; disconnects free the engine."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from live_server import metrics

TOPICS = ["the sea", "a mountain", "autumn leaves", "a city at night", "a lost key", "the moon", "an old train",
          "a cat", "coffee", "rain on a window", "a library", "the desert", "a snowstorm", "a garden", "a clock",
          "a bridge"]
BATCH_TOKENS = 16
NUM_DISCONNECTS = 20
IDLE_DEADLINE_S = 5


def _messages(topic: str) -> list[dict]:
    return [{"role": "user", "content": f"Write a poem about {topic}."}]


def _solo_text(client, topic: str) -> str:
    response = client.chat.completions.create(model="default", messages=_messages(topic), temperature=0,
                                              max_tokens=BATCH_TOKENS)
    return response.choices[0].message.content


def _streamed_text(client, topic: str, start: threading.Barrier) -> str:
    start.wait()
    stream = client.chat.completions.create(model="default", messages=_messages(topic), temperature=0,
                                            max_tokens=BATCH_TOKENS, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_concurrent_streams_are_batched_and_match_solo_texts(client, base_url):
    solo = [_solo_text(client, topic) for topic in TOPICS]
    before = metrics(base_url)
    start = threading.Barrier(len(TOPICS))
    with ThreadPoolExecutor(len(TOPICS)) as pool:
        batched = list(pool.map(lambda topic: _streamed_text(client, topic, start), TOPICS))
    after = metrics(base_url)
    mismatched = [(topic, s, b) for topic, s, b in zip(TOPICS, solo, batched) if s != b]
    assert not mismatched, f"{len(mismatched)} of {len(TOPICS)} batched texts differ from solo: {mismatched[:3]}"
    assert after["batched_decode_steps"] > before.get("batched_decode_steps", 0)
    assert after["max_decode_batch"] > 2
    assert after["running"] == after["waiting"] == 0


def _open_and_abandon(base_url: str, index: int) -> None:
    """Open a long stream, read two data chunks, then drop the connection.

    A short completions prompt keeps the 20 prefills cheap; chat streams end through the same SSE code.
    """
    body = {"model": "default", "prompt": f"{index}, {index + 1},", "stream": True, "max_tokens": 500,
            "ignore_eos": True}
    with httpx.Client(timeout=120) as http:
        with http.stream("POST", f"{base_url}/v1/completions", json=body) as response:
            assert response.status_code == 200
            data_lines = (line for line in response.iter_lines() if line.startswith("data: "))
            next(data_lines)
            next(data_lines)


def _wait_until_idle(base_url: str, deadline_s: float) -> dict[str, float]:
    deadline = time.monotonic() + deadline_s
    while True:
        stats = metrics(base_url)
        if stats["running"] == stats["waiting"] == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def test_disconnected_streams_free_the_engine(client, base_url):
    canceled_before = metrics(base_url).get("requests_canceled", 0)
    with ThreadPoolExecutor(NUM_DISCONNECTS) as pool:
        list(pool.map(lambda i: _open_and_abandon(base_url, i), range(NUM_DISCONNECTS)))
    stats = _wait_until_idle(base_url, IDLE_DEADLINE_S)
    assert stats["running"] == 0 and stats["waiting"] == 0, stats
    assert stats["requests_canceled"] - canceled_before == NUM_DISCONNECTS

    started = time.monotonic()
    response = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Hi!"}],
                                              temperature=0, max_tokens=8)
    assert response.choices[0].message.content
    assert time.monotonic() - started < 10

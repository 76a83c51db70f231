"""`mistralrs serve` on the SmolLM2 Q4K artifact of the tvm backend (cpu), driven with the openai SDK."""
import openai
import pytest

from live_server import LiveServer

STORY = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def tvm_client(smollm2_artifact, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("e2e-tvm") / "server.log"
    server = LiveServer(["--artifact", str(smollm2_artifact("Q4K", backend="tvm")), "--threads", "2", "--max-batch", "4",
                         "--max-seq-len", "512"], log_path)
    try:
        server.wait_until_healthy(120)
        with openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="EMPTY", max_retries=0, timeout=120) as client:
            yield client
    finally:
        if server.stop() != 0:
            print(f"\nthe tvm server exited uncleanly:\n{server.log()}")


def chat(client, messages, **kwargs):
    return client.chat.completions.create(model="default", messages=messages, temperature=0, **kwargs)


def test_answers_paris(tvm_client):
    response = chat(tvm_client, [{"role": "user", "content": "What is the capital of France?"}], max_tokens=16)
    assert "Paris" in response.choices[0].message.content


def test_stream_equals_the_non_streamed_answer(tvm_client):
    expected = chat(tvm_client, STORY, max_tokens=24)
    chunks = list(chat(tvm_client, STORY, max_tokens=24, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content and text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]

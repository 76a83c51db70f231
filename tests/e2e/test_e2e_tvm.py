"""`mistralrs serve` on the SmolLM2 Q4K artifact of the tvm backend (cpu), driven with the openai SDK."""
import pytest

from live_server import greedy_chat as chat
from live_server import served_client

STORY = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def tvm_client(smollm2_artifact, tmp_path_factory):
    args = ["--artifact", str(smollm2_artifact("Q4K", backend="tvm")), "--threads", "2", "--max-batch", "4",
            "--max-seq-len", "512"]
    with served_client(args, tmp_path_factory.mktemp("e2e-tvm") / "server.log") as client:
        yield client


def test_answers_paris(tvm_client):
    response = chat(tvm_client, [{"role": "user", "content": "What is the capital of France?"}], max_tokens=16)
    assert "Paris" in response.choices[0].message.content


def test_stream_equals_the_non_streamed_answer(tvm_client):
    expected = chat(tvm_client, STORY, max_tokens=24)
    chunks = list(chat(tvm_client, STORY, max_tokens=24, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content and text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]

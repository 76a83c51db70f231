"""`mistralrs serve` on a SmolLM2 Q4K artifact compiled with `--decode native`, driven with the openai SDK."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from live_server import greedy_chat as chat
from live_server import served_client
from mistralrs.compiler.targets.native_decode import ISA_FLAGS
from mistralrs.hardware import cpu_flags

pytestmark = pytest.mark.skipif(not set(ISA_FLAGS) <= cpu_flags(), reason="needs AVX-512 VNNI")

STORY = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def native_client(smollm2_artifact, tmp_path_factory):
    args = ["--artifact", str(smollm2_artifact("Q4K", decode="native")), "--threads", "2", "--max-batch", "8",
            "--max-seq-len", "512", "--no-prefix-sharing"]
    with served_client(args, tmp_path_factory.mktemp("e2e-native") / "server.log") as client:
        yield client


def test_answers_paris(native_client):
    response = chat(native_client, [{"role": "user", "content": "What is the capital of France?"}], max_tokens=16)
    assert "Paris" in response.choices[0].message.content


def test_concurrent_streams_decode_as_one_stream_alone(native_client):
    """Six streams at once decode as batches (AMX where the CPU has it) and each gives the text one stream gets alone
    (batch-1 steps), token for token: a native step computes each row as it would alone. (Prefix sharing is off:
    a prompt that shares a cached prefix has its last position computed by the graph in a batch of one token a row,
    which rounds a little differently from the prompt's own prefill, and that can flip a near-tie many tokens on.)"""
    alone = chat(native_client, STORY, max_tokens=48).choices[0].message.content

    def streamed(_):
        chunks = chat(native_client, STORY, max_tokens=48, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with ThreadPoolExecutor(6) as pool:
        texts = list(pool.map(streamed, range(6)))
    assert alone and texts == [alone] * 6

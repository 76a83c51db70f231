"""The real gunicorn server in a subprocess, driven with the official openai SDK."""
import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

SCRIPT = Path(__file__).with_name("serve_fake.py")
MESSAGES = [{"role": "user", "content": "hi"}]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(url, server, deadline_s=20):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError("the server did not come up")


@contextlib.contextmanager
def _running_server(log_path):
    port = _free_port()
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, str(SCRIPT), str(port)], stdout=log, stderr=log)
    try:
        _wait_until_healthy(f"http://127.0.0.1:{port}", server)
        yield f"http://127.0.0.1:{port}", server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _use_the_sdk(url):
    with openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY", max_retries=0) as client:
        chat = client.chat.completions.create(model="default", messages=MESSAGES)
        assert chat.choices[0].message.content == "Hello world!"
        assert chat.choices[0].finish_reason == "stop" and chat.usage.completion_tokens == 12

        chunks = list(client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True,
                                                     stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content for c in chunks if c.choices) == "Hello world!"
        assert chunks[-1].usage.total_tokens == chat.usage.total_tokens

        completion = client.completions.create(model="default", prompt="Say", max_tokens=5)
        assert completion.choices[0].text == "Hello"

        with pytest.raises(openai.NotFoundError) as not_found:
            client.chat.completions.create(model="gpt-4", messages=MESSAGES)
        assert not_found.value.code == "model_not_found"

        with pytest.raises(openai.BadRequestError) as bad_request:
            client.post("/chat/completions", cast_to=object, content=b"{oops",
                        options={"headers": {"Content-Type": "application/json"}})
        assert bad_request.value.type == "invalid_request_error"

    raw = httpx.post(f"{url}/v1/chat/completions", content=b"{oops", headers={"Content-Type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"


def test_gunicorn_server_with_the_openai_sdk(tmp_path):
    log_path = tmp_path / "server.log"
    with _running_server(log_path) as (url, server):
        _use_the_sdk(url)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    log = log_path.read_text()
    assert "Model: fake-model" in log and "Max batch: 16" in log
    assert "fake engine shut down" in log

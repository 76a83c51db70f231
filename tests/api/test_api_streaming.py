import json

from falcon import testing

from api_testing import sse_events
from fake_engine import FakeEngine
from mistralrs.api import create_app

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def stream(client, **body):
    return client.simulate_post(CHAT, json={"messages": MESSAGES, "stream": True, **body})


def test_headers_and_framing(client):
    result = stream(client, max_tokens=3)
    assert result.status_code == 200
    assert result.headers["content-type"] == "text/event-stream"
    assert result.headers["cache-control"] == "no-cache"
    assert result.headers["x-request-id"].startswith("req_")
    assert all(frame.startswith("data: {") for frame in result.text.split("\n\n")[:-2])
    assert result.text.endswith("data: [DONE]\n\n")
    assert '": ' not in result.text


def test_chunks(client):
    events = sse_events(stream(client, max_tokens=3))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len(chunks) == 3
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["usage"] is None for c in chunks)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": "H"}, {"content": "e"}, {"content": "l"}]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "length"]


def test_include_usage_adds_a_last_chunk(client):
    events = sse_events(stream(client, stream_options={"include_usage": True}))
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 12
    assert all(c["usage"] is None for c in events[:-2])


def test_n_choices_each_start_with_the_role(client):
    chunks = sse_events(stream(client, n=2, max_tokens=2))[:-1]
    firsts = {}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        firsts.setdefault(choice["index"], choice["delta"])
    assert firsts == {0: {"role": "assistant", "content": "H"}, 1: {"role": "assistant", "content": "H"}}
    finals = [c["choices"][0]["index"] for c in chunks if c["choices"][0]["finish_reason"]]
    assert sorted(finals) == [0, 1]


def test_logprobs_in_chunks(client):
    chunk = sse_events(stream(client, max_tokens=1, logprobs=True))[0]
    assert chunk["choices"][0]["logprobs"] == {"content": [
        {"token": "H", "logprob": -0.25, "bytes": [72], "top_logprobs": []}]}


def test_keep_alive_comments(monkeypatch):
    monkeypatch.setenv("KEEP_ALIVE_INTERVAL", "20")
    client = testing.TestClient(create_app(FakeEngine(token_delay_s=0.1)))
    result = stream(client, max_tokens=2)
    assert ":\n\n" in result.text
    events = sse_events(result)
    assert ":" in events and events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["delta"]["content"] for e in events if isinstance(e, dict)) == "He"


def test_bad_keep_alive_interval_falls_back(monkeypatch, caplog):
    monkeypatch.setenv("KEEP_ALIVE_INTERVAL", "soon")
    client = testing.TestClient(create_app(FakeEngine()))
    assert stream(client, max_tokens=1).text.endswith("data: [DONE]\n\n")
    assert "KEEP_ALIVE_INTERVAL" in caplog.text


def test_engine_error_mid_stream():
    client = testing.TestClient(create_app(FakeEngine(error_after=2)))
    events = sse_events(stream(client))
    assert [e["choices"][0]["delta"]["content"] for e in events[:2]] == ["H", "e"]
    assert events[2] == {"error": {"message": "fake engine failure", "type": "server_error", "param": None,
                                   "code": None}}
    assert events[3:] == ["[DONE]"]


def test_errors_before_streaming_are_plain_json(client):
    result = stream(client, model="nope")
    assert result.status_code == 404
    assert result.headers["content-type"].startswith("application/json")


def test_closing_the_stream_cancels_the_request():
    engine = FakeEngine(reply="x" * 100, token_delay_s=0.01)
    app = create_app(engine)
    environ = testing.create_environ(method="POST", path=CHAT, headers={"Content-Type": "application/json"},
                                     body=json.dumps({"messages": MESSAGES, "stream": True}))
    body = app(environ, lambda status, headers, exc_info=None: None)
    first = next(iter(body))
    assert first.startswith(b"data: ")
    body.close()
    assert engine.cancelled == ["fake-1"]


def test_finished_stream_does_not_cancel(client, engine):
    stream(client)
    assert engine.cancelled == []

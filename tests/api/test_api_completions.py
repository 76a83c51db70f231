from falcon import testing

from api_testing import assert_error, sse_events
from fake_engine import FakeEngine
from mistralrs.api import create_app

COMPLETIONS = "/v1/completions"


def post(client, **body):
    return client.simulate_post(COMPLETIONS, json=body)


def test_response_shape(client):
    body = post(client, prompt="Say", max_tokens=5).json
    assert list(body) == ["id", "choices", "created", "model", "system_fingerprint", "object", "usage"]
    assert body["id"].startswith("cmpl-")
    assert body["object"] == "text_completion"
    assert body["choices"] == [{"finish_reason": "length", "index": 0, "text": "Hello", "logprobs": None}]
    assert body["usage"]["prompt_tokens"] == 4


def test_text_is_not_trimmed():
    client = testing.TestClient(create_app(FakeEngine(reply="  spaced ")))
    assert post(client, prompt="x").json["choices"][0]["text"] == "  spaced "


def test_prompt_list_with_n(client, engine):
    body = post(client, prompt=["a", "bb"], n=2, max_tokens=2).json
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert len(engine.requests) == 2
    assert body["usage"]["prompt_tokens"] == 2 + 3
    assert body["usage"]["completion_tokens"] == 8


def test_token_id_prompts(client, engine):
    assert post(client, prompt=[10, 11, 12]).status_code == 200
    assert post(client, prompt=[[10, 11], [12]]).status_code == 200
    assert [r.prompt_token_ids for r in engine.requests] == [[10, 11, 12], [10, 11], [12]]


def test_bad_prompts(client):
    for prompt in (None, 5, [], [1, "a"], [[1], []], [[-1]], [[10_000]]):
        assert_error(post(client, prompt=prompt), 400, param="prompt")


def test_echo_and_suffix(client):
    choice = post(client, prompt="Q: ", max_tokens=5, echo=True, suffix="<end>").json["choices"][0]
    assert choice["text"] == "Q: Hello<end>"


def test_echo_of_token_ids(client, engine):
    ids = engine.tokenizer.encode("abc", add_special_tokens=False)
    assert post(client, prompt=ids, echo=True, max_tokens=1).json["choices"][0]["text"] == "abcH"


def test_logprobs_shape(client, engine):
    logprobs = post(client, prompt="ab", echo=True, logprobs=2, max_tokens=3).json["choices"][0]["logprobs"]
    assert engine.requests[0].sampling.top_logprobs == 2
    assert logprobs == {"tokens": ["H", "e", "l"], "token_logprobs": [-0.25, -0.25, -0.25],
                        "top_logprobs": [{"H": -0.25, "x": -3.0}, {"e": -0.25, "x": -3.0}, {"l": -0.25, "x": -3.0}],
                        "text_offset": [2, 3, 4]}
    assert post(client, prompt="ab", logprobs=0).json["choices"][0]["logprobs"]["top_logprobs"][0] == {}
    assert_error(post(client, prompt="ab", logprobs=6), 400, param="logprobs")


def test_model_validation(client):
    assert_error(post(client, prompt="x", model="other"), 404, param="model", code="model_not_found")


def test_streamed_completion(client):
    result = post(client, prompt=["a", "b"], echo=True, suffix="!", max_tokens=2, stream=True, logprobs=1,
                  stream_options={"include_usage": True})
    events = sse_events(result)
    assert events[-1] == "[DONE]"
    chunks, usage_chunk = events[:-2], events[-2]
    assert all(c["object"] == "text_completion" and c["usage"] is None for c in chunks)
    texts = {}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        assert list(choice) == ["text", "index", "logprobs", "finish_reason"]
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {0: "aHe!", 1: "bHe!"}
    assert chunks[1]["choices"][0]["logprobs"]["text_offset"] == [2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 4


def test_truncate_sequence(engine):
    engine = FakeEngine(max_context=10)
    client = testing.TestClient(create_app(engine))
    assert_error(post(client, prompt="x" * 20), 400, param="prompt", code="context_length_exceeded")
    assert post(client, prompt="0123456789abcdef", truncate_sequence=True, max_tokens=4).status_code == 200
    assert engine.tokenizer.decode(engine.requests[0].prompt_token_ids) == "abcdef"

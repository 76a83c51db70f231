import pytest
from falcon import testing

from api_testing import assert_error
from fake_engine import FakeEngine
from mistralrs.api import create_app
from mistralrs.api.body import MAX_BODY_BYTES
from mistralrs.runtime.errors import EngineOverloaded, EngineUnavailable, InvalidRequest

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def test_malformed_json(client):
    assert_error(client.simulate_post(CHAT, body="{not json"), 400)
    assert_error(client.simulate_post(CHAT, body=""), 400)


def test_body_must_be_an_object(client):
    assert "JSON object" in assert_error(client.simulate_post(CHAT, json=[1, 2]), 400)


def test_missing_messages(client):
    assert_error(client.simulate_post(CHAT, json={"model": "default"}), 400, param="messages")


@pytest.mark.parametrize("field, value", [
    ("temperature", "hot"), ("max_tokens", 1.5), ("n", True), ("stream", "yes"), ("top_k", "3"), ("model", 7),
    ("logit_bias", [1]), ("stop", 5), ("stop", ["a", 1]), ("seed", "x"), ("truncate_sequence", 1),
])
def test_wrong_field_types(client, field, value):
    message = assert_error(client.simulate_post(CHAT, json={"messages": MESSAGES, field: value}), 400,
                           param=field, code="invalid_type")
    assert field in message


@pytest.mark.parametrize("field, value", [
    ("max_tokens", 0), ("max_tokens", -3), ("max_completion_tokens", 0), ("n", 0), ("temperature", -1),
    ("top_p", 1.5), ("min_p", -0.1), ("top_logprobs", 21), ("repetition_penalty", 0),
])
def test_out_of_range_values(client, field, value):
    body = {"messages": MESSAGES, field: value, "logprobs": True}
    assert_error(client.simulate_post(CHAT, json=body), 400, param=field)


def test_bad_nested_fields(client):
    bad_bias = {"messages": MESSAGES, "logit_bias": {"abc": 1}}
    assert_error(client.simulate_post(CHAT, json=bad_bias), 400, param="logit_bias")
    out_of_vocab = {"messages": MESSAGES, "logit_bias": {"100000": 1}}
    assert_error(client.simulate_post(CHAT, json=out_of_vocab), 400, param="logit_bias")
    bad_usage = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": "y"}}
    assert_error(client.simulate_post(CHAT, json=bad_usage), 400, param="stream_options.include_usage",
                 code="invalid_type")
    assert_error(client.simulate_post(CHAT, json={"messages": [{"content": "x"}]}), 400, param="messages[0].role")
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    assert_error(client.simulate_post(CHAT, json={"messages": image}), 400, param="messages[0].content[0].type")
    assert_error(client.simulate_post(CHAT, json={"messages": [{"role": "user"}]}), 400,
                 param="messages[0].content")


def test_top_logprobs_needs_logprobs(client):
    assert_error(client.simulate_post(CHAT, json={"messages": MESSAGES, "top_logprobs": 2}), 400,
                 param="top_logprobs")


def test_template_error_is_a_bad_request(client):
    assert_error(client.simulate_post(CHAT, json={"messages": [{"role": "robot", "content": "x"}]}), 400,
                 param="messages")


def test_tool_choice_required_needs_tools(client):
    assert_error(client.simulate_post(CHAT, json={"messages": MESSAGES, "tool_choice": "required"}), 400,
                 param="tool_choice")


def test_body_too_large(client):
    result = client.simulate_post(CHAT, body=b" " * (MAX_BODY_BYTES + 1))
    assert_error(result, 413)


@pytest.mark.parametrize("error, status, error_type, param, code", [
    (InvalidRequest("n too large", param="n"), 400, "invalid_request_error", "n", None),
    (EngineOverloaded("queue full", retry_after_s=3), 429, "rate_limit_error", None, "engine_overloaded"),
    (EngineUnavailable("shutting down"), 503, "server_error", None, "engine_unavailable"),
])
def test_engine_submit_errors(error, status, error_type, param, code):
    client = testing.TestClient(create_app(FakeEngine(submit_error=error)))
    result = client.simulate_post(CHAT, json={"messages": MESSAGES})
    assert assert_error(result, status, error_type, param, code) == str(error)
    if status == 429:
        assert result.headers["retry-after"] == "3"


def test_unexpected_error_is_a_generic_500(caplog):
    client = testing.TestClient(create_app(FakeEngine(submit_error=KeyError("secret detail"))))
    result = client.simulate_post(CHAT, json={"messages": MESSAGES}, headers={"x-request-id": "r1"})
    message = assert_error(result, 500, "server_error")
    assert "secret detail" not in message and "r1" in message
    assert "Traceback" in caplog.text and "secret detail" in caplog.text


def test_engine_error_during_non_streamed_request():
    engine = FakeEngine(error_after=3)
    client = testing.TestClient(create_app(engine))
    result = client.simulate_post(CHAT, json={"messages": MESSAGES})
    assert assert_error(result, 500, "server_error") == "fake engine failure"


def test_unknown_fields_are_ignored(client):
    assert client.simulate_post(CHAT, json={"messages": MESSAGES, "user": "u", "service_tier": "x"}).status_code == 200

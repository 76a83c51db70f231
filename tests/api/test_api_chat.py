import pytest
from falcon import testing

from api_testing import assert_error
from fake_engine import BOS, FakeEngine
from mistralrs.api import create_app

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def post(client, **body):
    return client.simulate_post(CHAT, json={"messages": MESSAGES, **body})


def test_response_shape(client):
    result = post(client)
    assert result.status_code == 200
    body = result.json
    assert list(body) == ["id", "choices", "created", "model", "system_fingerprint", "object", "usage"]
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) == len("chatcmpl-") + 32
    assert body["object"] == "chat.completion"
    assert body["model"] == "fake-model"
    assert body["system_fingerprint"] == "local"
    assert isinstance(body["created"], int)
    assert body["choices"] == [{"finish_reason": "stop", "index": 0, "logprobs": None,
                                "message": {"content": "Hello world!", "role": "assistant", "tool_calls": None}}]
    usage = body["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (20, 12, 32)
    for extra in ("avg_tok_per_sec", "avg_prompt_tok_per_sec", "avg_compl_tok_per_sec", "total_time_sec",
                  "total_prompt_time_sec", "total_completion_time_sec"):
        assert isinstance(usage[extra], float)


def test_json_is_compact(client):
    assert result_text_has_no_spaces(post(client).text)


def result_text_has_no_spaces(text):
    return '","' in text and '", "' not in text and '": ' not in text


def test_prompt_is_rendered_through_the_template_without_special_tokens(client, engine):
    post(client)
    assert engine.requests[0].prompt_token_ids == engine.tokenizer.encode("<user>hi\n<assistant>", False)


def test_messages_as_a_string(client, engine):
    assert post(client, messages="just text").status_code == 200
    assert engine.tokenizer.template_calls[0]["messages"] == [{"role": "user", "content": "just text"}]


def test_content_parts_are_joined(client, engine):
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": [{"text": "untyped"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function"}]},
    ]
    assert post(client, messages=messages).status_code == 200
    rendered = engine.tokenizer.template_calls[0]["messages"]
    assert [m["content"] for m in rendered] == ["a b", "untyped", ""]
    assert rendered[2]["tool_calls"] == [{"id": "c", "type": "function"}]


def test_tools_and_template_kwargs_reach_the_template(client, engine):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    post(client, tools=tools, tool_choice="auto", enable_thinking=False, chat_template_kwargs={"x": 1})
    call = engine.tokenizer.template_calls[0]
    assert call["tools"] == tools
    assert (call["enable_thinking"], call["x"]) == (False, 1)
    assert_error(post(client, chat_template_kwargs={"messages": []}), 400, param="chat_template_kwargs")


@pytest.mark.parametrize("model", ["default", "fake-model"])
def test_known_models(client, model):
    assert post(client, model=model).status_code == 200


def test_unknown_model(client):
    message = assert_error(post(client, model="gpt-4"), 404, param="model", code="model_not_found")
    assert message == ("The model `gpt-4` does not exist. Available models: default, fake-model. "
                       "Use 'default' to use the default model.")


def test_sampling_fields_reach_the_engine(client, engine):
    post(client, temperature=0.5, top_p=0.9, top_k=40, min_p=0.05, frequency_penalty=0.1, presence_penalty=0.2,
         repetition_penalty=1.1, logit_bias={"5": -100, "7": 2.5}, seed=42, max_completion_tokens=5,
         stop=["zz", ""], ignore_eos=True, n=2)
    request = engine.requests[0]
    sampling, stopping = request.sampling, request.stopping
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p) == (0.5, 0.9, 40, 0.05)
    assert (sampling.frequency_penalty, sampling.presence_penalty, sampling.repetition_penalty) == (0.1, 0.2, 1.1)
    assert sampling.logit_bias == {5: -100.0, 7: 2.5}
    assert sampling.seed == 42
    assert (stopping.max_tokens, stopping.stop_strings, stopping.ignore_eos) == (5, ("zz",), True)
    assert request.n == 2


def test_defaults_are_left_to_the_engine(client, engine):
    post(client)
    request = engine.requests[0]
    assert request.sampling.temperature is None and request.sampling.top_p is None
    assert request.stopping.max_tokens is None and request.stopping.stop_strings == ()
    assert request.n == 1 and not request.sampling.logprobs


def test_stop_string_and_length(client):
    assert post(client, stop="wor").json["choices"][0]["message"]["content"] == "Hello "
    choice = post(client, max_tokens=4).json["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("Hell", "length")


def test_n_choices(client):
    body = post(client, n=3).json
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in body["choices"]} == {"Hello world!"}
    assert body["usage"]["completion_tokens"] == 36


def test_logprobs_shape(client, engine):
    body = post(client, logprobs=True, top_logprobs=2, max_tokens=2).json
    assert engine.requests[0].sampling.logprobs and engine.requests[0].sampling.top_logprobs == 2
    content = body["choices"][0]["logprobs"]["content"]
    assert content[0] == {"token": "H", "logprob": -0.25, "bytes": [72],
                          "top_logprobs": [{"token": "H", "logprob": -0.25, "bytes": [72]},
                                           {"token": "x", "logprob": -3.0, "bytes": [120]}]}
    assert [c["token"] for c in content] == ["H", "e"]


def test_context_length_exceeded():
    client = testing.TestClient(create_app(FakeEngine(max_context=20)))
    message = assert_error(post(client, messages="x" * 30), 400, param="messages", code="context_length_exceeded")
    assert "truncate_sequence" in message and "20" in message
    assert_error(post(client, messages="x", max_tokens=10), 400, code="context_length_exceeded",
                 param="messages")


def test_truncate_sequence_keeps_the_end():
    engine = FakeEngine(max_context=20)
    client = testing.TestClient(create_app(engine))
    assert post(client, messages="abcdefghijklmnopqrstuvwxyz", max_tokens=5, truncate_sequence=True).status_code == 200
    prompt = engine.requests[0].prompt_token_ids
    assert len(prompt) == 15
    assert engine.tokenizer.decode(prompt).endswith("xyz\n<assistant>")
    assert post(client, messages="a" * 40, truncate_sequence=True).status_code == 200
    assert len(engine.requests[1].prompt_token_ids) == 19


def test_truncate_sequence_with_max_tokens_filling_the_context():
    client = testing.TestClient(create_app(FakeEngine(max_context=20)))
    assert_error(post(client, max_tokens=25, truncate_sequence=True), 400, param="max_tokens",
                 code="context_length_exceeded")


def test_completions_keep_bos(client, engine):
    client.simulate_post("/v1/completions", json={"prompt": "hi"})
    assert engine.requests[0].prompt_token_ids[0] == BOS

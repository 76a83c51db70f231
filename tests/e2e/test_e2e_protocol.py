"""Model names and protocol errors on the real server."""
import httpx
import openai
import pytest

HI = [{"role": "user", "content": "Hi"}]


def test_default_and_real_model_names_both_work(client):
    models = [m.id for m in client.models.list().data]
    assert models[0] == "default" and len(models) == 2
    for name in models:
        response = client.chat.completions.create(model=name, messages=HI, temperature=0, max_tokens=2)
        assert response.model == models[1] and response.choices[0].message.content is not None


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=2)
    assert error.value.code == "model_not_found"


def test_malformed_json_gets_openai_error_shape(base_url):
    response = httpx.post(f"{base_url}/v1/chat/completions", content=b"{bad",
                          headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]

from falcon import testing

from api_testing import assert_error
from fake_engine import FakeEngine
from mistralrs.api import create_app


def test_health_routes(client):
    for path in ("/", "/health"):
        result = client.simulate_get(path)
        assert result.status_code == 200
        assert result.text == "OK"
        assert result.headers["content-type"].startswith("text/plain")


def test_models_lists_default_first(client):
    result = client.simulate_get("/v1/models")
    assert result.status_code == 200
    body = result.json
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["default", "fake-model"]
    model = body["data"][1]
    assert model["status"] == "loaded"
    assert (model["isq"], model["backend"], model["target"]) == ("Q4K", "onnxruntime", "cpu")
    assert all(m["object"] == "model" and m["owned_by"] == "local" for m in body["data"])


def test_model_by_id(client):
    assert client.simulate_get("/v1/models/fake-model").json["id"] == "fake-model"
    assert_error(client.simulate_get("/v1/models/nope"), 404, param="model", code="model_not_found")


def test_metrics_exposes_engine_stats(client):
    result = client.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    assert "# TYPE mistralrs_running untyped\nmistralrs_running 0\n" in result.text
    assert "mistralrs_requests 0" in result.text


def test_openapi_and_docs(client):
    spec = client.simulate_get("/api-doc/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models"} <= spec["paths"].keys()
    docs = client.simulate_get("/docs")
    assert docs.headers["content-type"].startswith("text/html")
    assert "/api-doc/openapi.json" in docs.text


def test_unknown_route_and_wrong_method(client):
    message = assert_error(client.simulate_get("/v1/nothing"), 404)
    assert "/v1/nothing" in message
    result = client.simulate_get("/v1/chat/completions")
    assert_error(result, 405)
    assert "POST" in result.headers["allow"]


def test_request_id_echoed_or_generated(client):
    assert client.simulate_get("/health", headers={"x-request-id": "abc"}).headers["x-request-id"] == "abc"
    generated = client.simulate_get("/health").headers["x-request-id"]
    assert generated.startswith("req_") and len(generated) == 36
    assert client.simulate_get("/v1/nothing").headers["x-request-id"].startswith("req_")


def test_api_key_required_when_configured():
    client = testing.TestClient(create_app(FakeEngine(), api_key="sekret"))
    assert client.simulate_get("/health").status_code == 200
    missing = client.simulate_get("/v1/models")
    assert_error(missing, 401, code="invalid_api_key")
    assert missing.headers["x-request-id"].startswith("req_")
    wrong = client.simulate_get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert_error(wrong, 401, code="invalid_api_key")
    assert client.simulate_get("/v1/models", headers={"Authorization": "Bearer sekret"}).status_code == 200

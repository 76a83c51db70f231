"""Assertions shared by the API tests."""
import json


def sse_events(result):
    """The `data:` payloads of an SSE body (JSON decoded, "[DONE]" kept as a string) plus comment frames."""
    frames = result.text.split("\n\n")
    assert frames[-1] == "", "the body must end with a blank line"
    events = []
    for frame in frames[:-1]:
        if frame == ":":
            events.append(":")
        else:
            assert frame.startswith("data: "), frame
            payload = frame[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def assert_error(result, status, error_type="invalid_request_error", param=None, code=None):
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/json")
    error = result.json["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type
    assert error["param"] == param
    assert error["code"] == code
    assert "Traceback" not in error["message"]
    return error["message"]

"""Reading a request body: size limit, JSON parsing, and typed access to its fields."""
import json
from dataclasses import dataclass

import falcon

from .errors import APIError, invalid_request

MAX_BODY_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Kind:
    label: str
    types: tuple[type, ...]

    def accepts(self, value: object) -> bool:
        is_bool = isinstance(value, bool)
        return isinstance(value, self.types) and (not is_bool or bool in self.types)


NUMBER = Kind("a number", (int, float))
INTEGER = Kind("an integer", (int,))
BOOLEAN = Kind("a boolean", (bool,))
STRING = Kind("a string", (str,))
ARRAY = Kind("an array", (list,))
OBJECT = Kind("an object", (dict,))
_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
               dict: "an object"}


class Body:
    """A request's JSON object; `get` checks a field's type and range (null counts as absent)."""

    def __init__(self, data: dict):
        self.data = data

    def get(self, name: str, kind: Kind, default=None, minimum: float | None = None,
            maximum: float | None = None):
        value = self.data.get(name)
        if value is None:
            return default
        if not kind.accepts(value):
            raise invalid_type(name, kind, value)
        if minimum is not None and value < minimum:
            raise _out_of_range(name, f"{value} is less than the minimum of {minimum}")
        if maximum is not None and value > maximum:
            raise _out_of_range(name, f"{value} is greater than the maximum of {maximum}")
        return value


def _out_of_range(param: str, why: str) -> APIError:
    return invalid_request(f"Invalid value for '{param}': {why}.", param)


def invalid_type(param: str, kind: Kind, value: object) -> APIError:
    got = _JSON_NAMES.get(type(value), type(value).__name__)
    return invalid_request(f"Invalid type for '{param}': expected {kind.label}, but got {got} instead.", param,
                           "invalid_type")


def read_body(req: falcon.Request) -> Body:
    try:
        data = json.loads(_read_bytes(req))
    except ValueError as error:
        raise invalid_request(f"We could not parse the JSON body of your request: {error}.") from error
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.")
    return Body(data)


def _read_bytes(req: falcon.Request) -> bytes:
    if (req.content_length or 0) > MAX_BODY_BYTES:
        raise _too_large()
    stream = req.bounded_stream if req.content_length is not None else req.stream
    raw = stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise _too_large()
    return raw


def _too_large() -> APIError:
    return APIError(413, f"The request body is larger than the limit of {MAX_BODY_BYTES} bytes.")

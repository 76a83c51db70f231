"""Chat messages -> the prompt text, through the model's chat template."""
from .body import ARRAY, BOOLEAN, OBJECT, Body
from .errors import invalid_request

_TOOL_CHOICES = ("none", "auto", "required")
_RESERVED_TEMPLATE_KWARGS = frozenset({"messages", "tools", "add_generation_prompt"})


def render_prompt(body: Body, tokenizer) -> str:
    messages = parse_messages(body.data.get("messages"))
    tools = body.get("tools", ARRAY)
    _check_tool_choice(body.data.get("tool_choice"), tools)
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                             **_template_kwargs(body))
    except ValueError as error:
        raise invalid_request(f"The chat template could not render these messages: {error}", "messages") from error


def parse_messages(raw: object) -> list[dict]:
    """A plain string is one user message; each message's content becomes a string."""
    if raw is None:
        raise invalid_request("Missing required parameter: 'messages'.", "messages")
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise invalid_request("'messages' must be a string or a non-empty array of messages.", "messages")
    return [_parse_message(message, f"messages[{i}]") for i, message in enumerate(raw)]


def _parse_message(raw: object, param: str) -> dict:
    if not isinstance(raw, dict):
        raise invalid_request(f"'{param}' must be an object.", param)
    if not isinstance(raw.get("role"), str):
        raise invalid_request(f"'{param}.role' must be a string.", f"{param}.role")
    return {**raw, "content": _content_text(raw.get("content"), raw.get("tool_calls"), f"{param}.content")}


def _content_text(content: object, tool_calls: object, param: str) -> str:
    if isinstance(content, str):
        return content
    if content is None and tool_calls:
        return ""
    if isinstance(content, list):
        return " ".join(_part_text(part, f"{param}[{i}]", len(content)) for i, part in enumerate(content))
    raise invalid_request(f"'{param}' must be a string or an array of content parts.", param)


def _part_text(part: object, param: str, num_parts: int) -> str:
    """Text parts only; a lone part with "text" and no "type" counts as text (some clients send that)."""
    if not isinstance(part, dict):
        raise invalid_request(f"'{param}' must be an object.", param)
    part_type = part.get("type", "text" if num_parts == 1 and "text" in part else None)
    if part_type != "text":
        raise invalid_request(f"Content part type {part_type!r} is not supported; this model only accepts text.",
                              f"{param}.type")
    if not isinstance(part.get("text"), str):
        raise invalid_request(f"'{param}.text' must be a string.", f"{param}.text")
    return part["text"]


def _check_tool_choice(tool_choice: object, tools: list | None) -> None:
    if tool_choice is None or isinstance(tool_choice, dict):
        return
    if tool_choice not in _TOOL_CHOICES:
        raise invalid_request(f"'tool_choice' must be one of {', '.join(_TOOL_CHOICES)} or an object.",
                              "tool_choice")
    if tool_choice == "required" and not tools:
        raise invalid_request('tool_choice="required" requires at least one tool.', "tool_choice")


def _template_kwargs(body: Body) -> dict:
    """`chat_template_kwargs` pass through to the template; an explicit `enable_thinking` wins."""
    kwargs = dict(body.get("chat_template_kwargs", OBJECT, {}))
    if reserved := _RESERVED_TEMPLATE_KWARGS & kwargs.keys():
        raise invalid_request(f"'chat_template_kwargs' may not set {', '.join(sorted(reserved))}.",
                              "chat_template_kwargs")
    enable_thinking = body.get("enable_thinking", BOOLEAN)
    if enable_thinking is not None:
        kwargs["enable_thinking"] = enable_thinking
    return kwargs

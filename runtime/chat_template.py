"""A checkpoint's Jinja chat template(s), rendered exactly as Hugging Face transformers renders them."""
import json
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (HF's assistant-mask marker) renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        return caller()


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format):
    return datetime.now().strftime(format)


def _compile(source: str, name: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"chat template {name!r} does not compile: {e.message} (line {e.lineno})") from e


def _named_templates(templates: str | list | dict) -> dict[str, str]:
    if isinstance(templates, str):
        return {"default": templates}
    if isinstance(templates, list):
        return {entry["name"]: entry["template"] for entry in templates}
    return dict(templates)


def token_content(token) -> str | None:
    """A special token as tokenizer_config writes it: a string or an AddedToken dict."""
    return token.get("content") if isinstance(token, dict) else token


def _message_for_template(message: dict) -> dict:
    message = {k: v for k, v in message.items() if v is not None}
    reasoning = next((message[key] for key in _REASONING_FIELDS if message.get(key) is not None), None)
    if reasoning is not None:
        message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
    return message


class ChatTemplate:
    """One checkpoint's chat templates by name ("default", "tool_use", ...), each compiled once."""

    def __init__(self, templates: str | list | dict, special_tokens: dict[str, str] | None = None):
        self._templates = {name: _compile(src, name) for name, src in _named_templates(templates).items()}
        self._special_tokens = special_tokens or {}

    @classmethod
    def from_config(cls, tokenizer_config: dict, path: str | Path | None = None) -> "ChatTemplate | None":
        """chat_template.jinja + additional_chat_templates/*.jinja in `path` when present, else
        tokenizer_config's chat_template (transformers' precedence); None when there is none."""
        files = _template_files(Path(path)) if path is not None else {}
        templates = files or _named_templates(tokenizer_config.get("chat_template") or {})
        if not templates:
            return None
        special = {name: token_content(tokenizer_config.get(name)) for name in SPECIAL_TOKEN_NAMES}
        return cls(templates, {name: value for name, value in special.items() if value is not None})

    @property
    def names(self) -> list[str]:
        return sorted(self._templates)

    def render(self, messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = True,
               **template_kwargs) -> str:
        """The prompt text; raises ValueError when the template rejects the conversation."""
        template = self._pick(tools)
        variables = {**self._special_tokens, "documents": None, **template_kwargs}
        try:
            return template.render(
                messages=[_message_for_template(m) for m in messages],
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                **variables,
            )
        except jinja2.TemplateError as e:
            raise ValueError(f"chat template error: {e.message or e}") from e

    def _pick(self, tools: list[dict] | None) -> jinja2.Template:
        if tools is not None and "tool_use" in self._templates:
            return self._templates["tool_use"]
        if "default" in self._templates:
            return self._templates["default"]
        raise ValueError(f"no default chat template among {self.names}")


def _template_files(path: Path) -> dict[str, str]:
    files = {}
    if (path / "chat_template.jinja").is_file():
        files["default"] = (path / "chat_template.jinja").read_text(encoding="utf-8")
    for extra in sorted((path / "additional_chat_templates").glob("*.jinja")):
        files[extra.name.removesuffix(".jinja")] = extra.read_text(encoding="utf-8")
    return files

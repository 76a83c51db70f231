"""HF tokenizer files as bytes, with the chat template always inside tokenizer_config.json."""

import json
import tempfile
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def read_tokenizer_files(directory: Path) -> dict[str, bytes]:
    files = {name: (directory / name).read_bytes() for name in TOKENIZER_FILES if (directory / name).is_file()}
    template = _separate_chat_template(directory)
    config = files.get("tokenizer_config.json")
    if template is not None and config is not None and "chat_template" not in json.loads(config):
        files["tokenizer_config.json"] = update_tokenizer_config(config, {"chat_template": template})
    return files


def export_tokenizer_files(tokenizer) -> dict[str, bytes]:
    """The files a transformers tokenizer saves, read back from a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return read_tokenizer_files(Path(tmp))


def update_tokenizer_config(raw: bytes, values: dict) -> bytes:
    return json.dumps({**json.loads(raw), **values}, indent=2, ensure_ascii=False).encode()


def _separate_chat_template(directory: Path) -> str | None:
    # transformers >= 4.50 saves the template next to tokenizer_config.json rather than inside it
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    legacy = directory / "chat_template.json"
    if legacy.is_file():
        return json.loads(legacy.read_text()).get("chat_template")
    return None

import pytest

from mistralrs.runtime.chat_template import ChatTemplate
from mistralrs.runtime.tokenizer import Tokenizer

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city (°C), e.g. Zürich",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
SYSTEM = {"role": "system", "content": "Be brief & <precise>."}
USER = {"role": "user", "content": "What is the capital of France? ça va 世界"}
ASSISTANT = {"role": "assistant", "content": "Paris.", "tool_calls": None}
TOOL_CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
}
THINKING = {"role": "assistant", "content": "Paris.", "reasoning": "France -> Paris"}

CASES = {
    "user": ([USER], {}),
    "system_turns": ([SYSTEM, USER, ASSISTANT, USER], {}),
    "no_generation_prompt": ([SYSTEM, USER, ASSISTANT], {"add_generation_prompt": False}),
    "tools": ([USER, TOOL_CALL, USER], {"tools": TOOLS}),
    "tools_and_system": ([SYSTEM, USER], {"tools": TOOLS}),
    "enable_thinking": ([USER], {"enable_thinking": False}),
    "reasoning_alias": ([USER, THINKING, USER], {}),
}


@pytest.fixture(scope="module")
def hf_loader():
    import transformers

    return lambda path: transformers.PreTrainedTokenizerFast.from_pretrained(str(path))


def _both(path, hf_loader, messages, kwargs):
    kwargs = {"add_generation_prompt": True, **kwargs}
    ours = Tokenizer.from_dir(path).apply_chat_template(messages, **kwargs)
    theirs = hf_loader(path).apply_chat_template(messages, tokenize=False, **kwargs)
    return ours, theirs


@pytest.mark.parametrize("case", CASES)
def test_chatml_matches_transformers(chatml_dir, hf_loader, case):
    ours, theirs = _both(chatml_dir, hf_loader, *CASES[case])
    assert ours == theirs


def test_chatml_renders_what_it_should(chatml_dir):
    tok = Tokenizer.from_dir(chatml_dir)
    prompt = tok.apply_chat_template([USER, TOOL_CALL], tools=TOOLS, add_generation_prompt=False)
    assert '"description": "Weather in a city (°C), e.g. Zürich"' in prompt  # tojson keeps non-ASCII
    assert '\n  "type": "function"' in prompt  # indent=2
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' in prompt
    assert "<think>\n\n</think>" in tok.apply_chat_template([USER], enable_thinking=False)


@pytest.mark.parametrize("case", ["user", "system_turns", "no_generation_prompt", "tools"])
def test_named_templates_match_transformers(llama2_dir, hf_loader, case):
    ours, theirs = _both(llama2_dir, hf_loader, *CASES[case])
    assert ours == theirs


def test_tool_use_template_picked_with_tools(llama2_dir):
    tok = Tokenizer.from_dir(llama2_dir)
    assert tok.chat_template.names == ["default", "tool_use"]
    assert tok.apply_chat_template([USER]).startswith("<s>[INST] ")
    assert tok.apply_chat_template([USER], tools=TOOLS).startswith("<|im_start|>system\n")


def test_llama2_system_prompt(llama2_dir):
    prompt = Tokenizer.from_dir(llama2_dir).apply_chat_template([SYSTEM, USER, ASSISTANT])
    assert prompt == (
        "<s>[INST] <<SYS>>\nBe brief & <precise>.\n<</SYS>>\n\n"
        "What is the capital of France? ça va 世界 [/INST] Paris. </s>"
    )


def test_raise_exception_becomes_value_error(llama2_dir):
    tok = Tokenizer.from_dir(llama2_dir)
    with pytest.raises(ValueError, match="Conversation roles must alternate"):
        tok.apply_chat_template([USER, USER])


def test_undefined_attribute_error_is_value_error():
    template = ChatTemplate("{{ messages[0].content.upper() }}{{ foo.bar }}")
    with pytest.raises(ValueError, match="chat template error"):
        template.render([USER])


def test_syntax_error_at_compile_time():
    with pytest.raises(ValueError, match="does not compile"):
        ChatTemplate("{% for m in messages %}{{ m.content }}")


def test_no_default_template():
    template = ChatTemplate([{"name": "tool_use", "template": "x"}])
    assert template.render([USER], tools=[]) == "x"
    with pytest.raises(ValueError, match="no default chat template"):
        template.render([USER])


def test_globals_and_kwargs():
    template = ChatTemplate(
        "{{ bos_token }}|{{ eos_token }}|{{ strftime_now('%Y') | length }}|{{ custom }}|{{ documents }}",
        {"bos_token": "<s>", "eos_token": "</s>"},
    )
    assert template.render([USER], custom=7) == "<s>|</s>|4|7|None"
    assert template.render([USER], bos_token="[B]").startswith("[B]|")


def test_sandbox_blocks_attribute_escape():
    template = ChatTemplate("{{ messages.__class__.__mro__ }}")
    with pytest.raises(ValueError, match="chat template error"):
        template.render([USER])


def test_jinja_file_overrides_config(byte_level_dir):
    path = byte_level_dir({"chat_template": "from config"})
    (path / "chat_template.jinja").write_text("from file {{ messages | length }}")
    (path / "additional_chat_templates").mkdir()
    (path / "additional_chat_templates" / "tool_use.jinja").write_text("tools {{ tools | length }}")
    tok = Tokenizer.from_dir(path)
    assert tok.apply_chat_template([USER]) == "from file 1"
    assert tok.apply_chat_template([USER], tools=TOOLS) == "tools 1"

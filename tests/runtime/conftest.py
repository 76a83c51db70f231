"""Small tokenizers trained on the fly and written as HF tokenizer directories."""
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CHATML_TEMPLATE = """{%- set ns = namespace(system=none, started=false) -%}
{%- for message in messages %}
{%- if message.role == 'system' %}{% set ns.system = message.content %}{% continue %}{% endif %}
{%- if not ns.started and (ns.system or tools) %}
<|im_start|>system
{{ ns.system or 'You are a helpful assistant.' }}
{%- if tools %}

# Tools
<tools>
{% for tool in tools %}{{ tool | tojson(indent=2) }}
{% endfor %}</tools>
{%- endif %}<|im_end|>
{% endif %}
{%- set ns.started = true %}
<|im_start|>{{ message.role }}
{% if message.reasoning_content %}<think>{{ message.reasoning_content }}</think>
{% endif %}
{% generation %}{{ message.content }}{% endgeneration %}
{%- if message.tool_calls %}{% for call in message.tool_calls %}
<tool_call>{{ call.function | tojson }}</tool_call>{% endfor %}{% endif %}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is defined and not enable_thinking %}<think>

</think>

{% endif %}{% endif %}"""

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

_WORDS = (
    "the quick brown fox jumps over a lazy dog while naïve café owners serve crème brûlée "
    "to über busy people who ask what is the capital of France and answer Paris every day "
    "hello world tokens are pieces of text that models read one by one"
).split()


def corpus() -> list[str]:
    return [" ".join(_WORDS[(i * 7 + j * 3) % len(_WORDS)] for j in range(12)) for i in range(200)]


def train_byte_level(special_tokens: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer)
    return tok


def train_sentencepiece_like(style: str) -> Tokenizer:
    """A Llama-style BPE with <0xNN> byte fallback: `legacy` normalizes spaces to ▁ (Llama 2),
    `metaspace` uses the Metaspace pre-tokenizer and decoder."""
    plain = Tokenizer(models.BPE())
    plain.pre_tokenizer = pre_tokenizers.Metaspace()
    plain.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=400, limit_alphabet=60))
    spec = json.loads(plain.to_str())
    learned = sorted(spec["model"]["vocab"], key=spec["model"]["vocab"].get)
    pieces = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *learned]
    spec["model"].update(vocab={p: i for i, p in enumerate(pieces)}, byte_fallback=True, unk_token="<unk>")
    spec["added_tokens"] = [
        {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, c in enumerate(["<unk>", "<s>", "</s>"])
    ]
    tok = Tokenizer.from_str(json.dumps(spec))
    if style == "legacy":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        tok.pre_tokenizer = None
        tok.decoder = decoders.Sequence([
            decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)
        ])
    else:
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def write_tokenizer_dir(path: Path, backend: Tokenizer, config: dict, generation_config: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    backend.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    if generation_config is not None:
        (path / "generation_config.json").write_text(json.dumps(generation_config))
    return path


@pytest.fixture(scope="session")
def byte_level_backend() -> Tokenizer:
    return train_byte_level(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>"])


@pytest.fixture
def byte_level_dir(tmp_path, byte_level_backend):
    """Writes the byte-level tokenizer with a given tokenizer_config into a fresh directory."""
    return lambda config: write_tokenizer_dir(tmp_path, byte_level_backend, config)


@pytest.fixture(scope="session")
def chatml_dir(tmp_path_factory, byte_level_backend) -> Path:
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": {"__type": "AddedToken", "content": "<|im_end|>", "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False, "special": True},
        "pad_token": "<|endoftext|>",
        "chat_template": CHATML_TEMPLATE,
    }
    generation = {"eos_token_id": [2, 0], "temperature": 0.7, "do_sample": True}
    return write_tokenizer_dir(tmp_path_factory.mktemp("chatml"), byte_level_backend, config, generation)


@pytest.fixture(scope="session")
def llama2_dir(tmp_path_factory, byte_level_backend) -> Path:
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "add_bos_token": True,
        "chat_template": [
            {"name": "default", "template": LLAMA2_TEMPLATE},
            {"name": "tool_use", "template": CHATML_TEMPLATE},
        ],
    }
    return write_tokenizer_dir(tmp_path_factory.mktemp("llama2"), byte_level_backend, config)


def _sentencepiece_dir(tmp_path_factory, style: str) -> Path:
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": LLAMA2_TEMPLATE}
    backend = train_sentencepiece_like(style)
    return write_tokenizer_dir(tmp_path_factory.mktemp(f"sp_{style}"), backend, config)


@pytest.fixture(scope="session")
def sp_legacy_dir(tmp_path_factory) -> Path:
    return _sentencepiece_dir(tmp_path_factory, "legacy")


@pytest.fixture(scope="session")
def sp_metaspace_dir(tmp_path_factory) -> Path:
    return _sentencepiece_dir(tmp_path_factory, "metaspace")


@pytest.fixture(params=["legacy", "metaspace"])
def sentencepiece_dir(request) -> Path:
    return request.getfixturevalue(f"sp_{request.param}_dir")


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory, smollm2_gguf) -> Path:
    """The real SmolLM2 tokenizer, converted from the GGUF once by transformers."""
    import transformers

    hf = transformers.AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    path = tmp_path_factory.mktemp("smollm2")
    hf.save_pretrained(str(path))
    return path

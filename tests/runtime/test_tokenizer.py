import sys

import pytest

from mistralrs.runtime.tokenizer import Tokenizer

TEXT = "héllo 世界 🙂 the quick fox"


@pytest.fixture(scope="module")
def transformers():
    import transformers

    return transformers


def test_no_transformers_at_import():
    import subprocess

    code = "import sys, mistralrs.runtime.tokenizer, mistralrs.runtime.sampler; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_special_token_ids(chatml_dir):
    tok = Tokenizer.from_dir(chatml_dir)
    assert tok.bos_token_id is None
    assert tok.eos_token_ids == {2, 0}  # <|im_end|> from the config, [2, 0] from generation_config
    assert tok.vocab_size == 435
    assert tok.add_bos_token is False


def test_generation_config_passed_in(chatml_dir):
    tok = Tokenizer.from_dir(chatml_dir, generation_config={"eos_token_id": 4})
    assert tok.eos_token_ids == {2, 4}


def test_special_tokens_in_text_map_to_ids(chatml_dir):
    tok = Tokenizer.from_dir(chatml_dir)
    ids = tok.encode("<|im_start|>user\nhello<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2
    assert tok.decode(ids) == "user\nhello"
    assert tok.decode(ids, skip_special_tokens=False) == "<|im_start|>user\nhello<|im_end|>"


def test_add_bos_token_from_config(llama2_dir):
    tok = Tokenizer.from_dir(llama2_dir)
    assert tok.add_bos_token is True and tok.bos_token_id == 3
    assert tok.encode("hello")[0] == 3
    assert 3 not in tok.encode("hello", add_special_tokens=False)


def test_add_bos_token_from_post_processor(sentencepiece_dir, transformers):
    tok = Tokenizer.from_dir(sentencepiece_dir)
    hf = transformers.PreTrainedTokenizerFast.from_pretrained(str(sentencepiece_dir))
    assert tok.add_bos_token is True
    assert tok.encode(TEXT) == hf(TEXT)["input_ids"]
    assert tok.encode(TEXT).count(1) == 1
    assert tok.encode(TEXT, add_special_tokens=False) == hf(TEXT, add_special_tokens=False)["input_ids"]


def test_encode_matches_transformers_byte_level(chatml_dir, transformers):
    tok = Tokenizer.from_dir(chatml_dir)
    hf = transformers.PreTrainedTokenizerFast.from_pretrained(str(chatml_dir))
    text = "<|im_start|>user\n" + TEXT + "<|im_end|>\n"
    assert tok.encode(text) == hf(text)["input_ids"]


def test_token_bytes_byte_level(chatml_dir):
    tok = Tokenizer.from_dir(chatml_dir)
    ids = tok.encode(TEXT, add_special_tokens=False)
    assert b"".join(tok.token_bytes(i) for i in ids) == TEXT.encode()
    assert any(len(tok.token_bytes(i)) == 1 and tok.token_bytes(i)[0] >= 0x80 for i in ids)
    assert tok.token_bytes(1) == b"<|im_start|>"


def test_token_bytes_sentencepiece(sentencepiece_dir):
    tok = Tokenizer.from_dir(sentencepiece_dir)
    ids = tok.encode(TEXT, add_special_tokens=False)
    assert b"".join(tok.token_bytes(i) for i in ids) == (" " + TEXT).encode()
    byte_e4 = tok.encode("世", add_special_tokens=False)[1]
    assert tok.token_bytes(byte_e4) == b"\xe4"
    assert tok.token_text(byte_e4) == "\ufffd"
    assert tok.token_text(tok.encode(" the", add_special_tokens=False)[-1]) == " the"
    assert tok.byte_fallback_ids == frozenset(range(3, 259))


def test_token_text(chatml_dir):
    tok = Tokenizer.from_dir(chatml_dir)
    [the] = tok.encode(" the", add_special_tokens=False)
    assert tok.token_text(the) == " the"
    assert tok.token_text(2) == "<|im_end|>"


def test_no_chat_template(byte_level_dir):
    tok = Tokenizer.from_dir(byte_level_dir({"eos_token": "</s>"}))
    with pytest.raises(ValueError, match="no chat template"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}])


def test_smollm2_chat_template_and_ids(smollm2_dir, transformers):
    tok = Tokenizer.from_dir(smollm2_dir)
    hf = transformers.AutoTokenizer.from_pretrained(str(smollm2_dir))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(messages)
    assert prompt == hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert tok.encode(prompt) == hf(prompt)["input_ids"]
    assert tok.encode(prompt, add_special_tokens=False) == hf.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert tok.eos_token_ids == {hf.eos_token_id} and tok.bos_token_id == hf.bos_token_id
    assert tok.decode(tok.encode(TEXT)) == TEXT

import numpy as np
import pytest

from mistralrs.runtime.detokenizer import IncrementalDetokenizer
from mistralrs.runtime.tokenizer import Tokenizer

TEXTS = [
    "héllo 世界 🙂",
    "  leading spaces and  double  spaces ",
    "the quick brown fox 🦊🦊 jumps, naïve café — ok?",
    "日本語のテキスト\nnew line\ttab 🙂🙂🙂 end",
]


@pytest.fixture(params=["chatml", "sp_legacy", "sp_metaspace", "smollm2"])
def tokenizer(request) -> Tokenizer:
    return Tokenizer.from_dir(request.getfixturevalue(f"{request.param}_dir"))


def _stream(tok: Tokenizer, ids: list[int], skip_special_tokens: bool) -> list[str]:
    detok = IncrementalDetokenizer(tok, skip_special_tokens)
    return [detok.push(i) for i in ids] + [detok.flush()]


@pytest.mark.parametrize("text", TEXTS)
def test_text_round_trip_never_emits_broken_characters(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    pieces = _stream(tokenizer, ids, True)
    assert "".join(pieces) == tokenizer.decode(ids)
    assert not any("\ufffd" in p for p in pieces)


@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_random_ids_concatenate_to_decode(tokenizer, skip_special_tokens):
    rng = np.random.default_rng(0)
    vocab = min(tokenizer.vocab_size, 2000)
    for _ in range(150):
        ids = rng.integers(0, vocab, size=int(rng.integers(1, 40))).tolist()
        pieces = _stream(tokenizer, ids, skip_special_tokens)
        assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=skip_special_tokens), ids


def test_special_tokens_and_multibyte_mixed(tokenizer):
    ids = []
    for text in TEXTS:
        ids += tokenizer.encode(text, add_special_tokens=False) + sorted(tokenizer.special_token_ids)[:2]
    for skip in (True, False):
        pieces = _stream(tokenizer, ids, skip)
        assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=skip)
        assert not any("\ufffd" in p for p in pieces)


def test_emits_each_character_once_complete(chatml_dir):
    tok = Tokenizer.from_dir(chatml_dir)
    detok = tok.new_detokenizer()
    ids = tok.encode("a世", add_special_tokens=False)
    assert len(ids) == 4  # "a" + three byte tokens
    assert [detok.push(i) for i in ids] == ["a", "", "", "世"]
    assert detok.flush() == ""


def test_sentencepiece_leading_space(sentencepiece_dir):
    tok = Tokenizer.from_dir(sentencepiece_dir)
    ids = tok.encode("the quick fox", add_special_tokens=False)
    pieces = _stream(tok, ids, True)
    assert pieces[:3] == ["the", " quick", " fox"]


class _WindowSpy:
    """Wraps a Tokenizer and records how many ids each decode call sees."""

    def __init__(self, tok: Tokenizer):
        self._tok = tok
        self.special_token_ids = tok.special_token_ids
        self.byte_fallback_ids = tok.byte_fallback_ids
        self.window_sizes: list[int] = []

    def decode(self, ids, skip_special_tokens=True):
        self.window_sizes.append(len(ids))
        return self._tok.decode(ids, skip_special_tokens)


def test_decodes_a_small_window_only(chatml_dir):
    tok = Tokenizer.from_dir(chatml_dir)
    spy = _WindowSpy(tok)
    ids = tok.encode(" ".join(TEXTS) * 20, add_special_tokens=False)
    detok = IncrementalDetokenizer(spy)
    text = "".join(detok.push(i) for i in ids) + detok.flush()
    assert text == tok.decode(ids)
    assert len(ids) > 500 and max(spy.window_sizes) <= 8

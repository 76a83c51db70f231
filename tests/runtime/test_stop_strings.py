import random

import pytest

from mistralrs.runtime.stop_strings import StopStringMatcher


def _run(stops, chunks):
    matcher = StopStringMatcher(stops)
    out = []
    for chunk in chunks:
        text, stopped = matcher.feed(chunk)
        out.append(text)
        if stopped:
            return "".join(out), True
    return "".join(out) + matcher.flush(), False


def _expected(stops, text):
    hits = [text.find(s) for s in stops if s and s in text]
    return (text[:min(hits)], True) if hits else (text, False)


def test_stop_across_chunks():
    matcher = StopStringMatcher(["</answer>"])
    assert matcher.feed("The answer is 42</an") == ("The answer is 42", False)
    assert matcher.feed("swer> and more") == ("", True)
    assert matcher.matched == "</answer>"
    assert matcher.feed("ignored") == ("", True)


def test_holds_back_possible_prefix_then_releases():
    matcher = StopStringMatcher(["STOP"])
    assert matcher.feed("abc ST") == ("abc ", False)
    assert matcher.feed("O") == ("", False)
    assert matcher.feed("RM") == ("STORM", False)
    assert matcher.feed("x S") == ("x ", False)
    assert matcher.flush() == "S"
    assert matcher.flush() == ""


def test_earliest_of_several_stops_wins():
    assert _run(["world", "lo w"], ["hello wor", "ld"]) == ("hel", True)


def test_stop_inside_one_chunk():
    assert _run(["\n\n"], ["a\n\nb"]) == ("a", True)


def test_no_stops_passes_everything():
    matcher = StopStringMatcher([])
    assert matcher.feed("abc") == ("abc", False)
    assert StopStringMatcher([""]).feed("x") == ("x", False)


@pytest.mark.parametrize("seed", range(30))
def test_random_chunking_matches_whole_text_search(seed):
    rng = random.Random(seed)
    alphabet = "ab世🙂 "
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
    stops = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
    cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 8))))
    chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
    assert _run(stops, chunks) == _expected(stops, text)

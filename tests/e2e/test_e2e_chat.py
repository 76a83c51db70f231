"""Chat completions against the real model: greedy answers, streaming, n, stop strings, seeds, logprobs."""
import pytest

STORY = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
STORY_TOKENS = 24


def chat(client, messages, **kwargs):
    return client.chat.completions.create(model="default", messages=messages, **kwargs)


@pytest.fixture(scope="module")
def greedy_story(client):
    """The non-streamed greedy reference that the streaming and stop-string tests compare against."""
    return chat(client, STORY, temperature=0, max_tokens=STORY_TOKENS)


def test_greedy_answer_knows_the_capital_of_france(client):
    response = chat(client, [{"role": "user", "content": "What is the capital of France?"}], temperature=0,
                    max_tokens=16)
    assert "Paris" in response.choices[0].message.content


def test_stream_reassembles_to_the_greedy_text(client, greedy_story):
    chunks = list(chat(client, STORY, temperature=0, max_tokens=STORY_TOKENS, stream=True,
                       stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == greedy_story.choices[0].message.content and text
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [greedy_story.choices[0].finish_reason]
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == greedy_story.usage.completion_tokens
    assert last.usage.prompt_tokens == greedy_story.usage.prompt_tokens


def test_n_returns_two_choices(client):
    response = chat(client, [{"role": "user", "content": "Name a color."}], n=2, temperature=0.8, seed=7,
                    max_tokens=6)
    assert [c.index for c in response.choices] == [0, 1]
    assert all(c.message.content for c in response.choices)
    assert response.usage.completion_tokens >= 2


def test_stop_string_cuts_the_greedy_text(client, greedy_story):
    text = greedy_story.choices[0].message.content
    stop = _a_word_in_the_middle(text)
    response = chat(client, STORY, temperature=0, max_tokens=STORY_TOKENS, stop=[stop])
    assert response.choices[0].message.content == text[:text.index(stop)]
    assert response.choices[0].finish_reason == "stop"


def _a_word_in_the_middle(text: str) -> str:
    words = [w for w in text[len(text) // 3:].split() if len(w) >= 4 and w.isalpha()]
    assert words, f"no stop candidate in {text!r}"
    return words[0]


def test_seed_makes_sampling_reproducible(client):
    messages = [{"role": "user", "content": "Tell me something surprising about octopuses."}]

    def sample(seed):
        return chat(client, messages, temperature=0.8, seed=seed, max_tokens=8).choices[0].message.content

    first = sample(1234)
    assert sample(1234) == first
    assert any(sample(seed) != first for seed in (1, 2, 3))  # lazily: usually the first other seed differs


def test_logprobs_have_openai_shape(client):
    response = chat(client, STORY, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3)
    choice = response.choices[0]
    content = choice.logprobs.content
    assert len(content) == response.usage.completion_tokens == 6
    for entry in content:
        assert isinstance(entry.token, str) and entry.logprob <= 0
        assert all(0 <= b < 256 for b in entry.bytes)
        assert len(entry.top_logprobs) == 3
        tops = [t.logprob for t in entry.top_logprobs]
        assert tops == sorted(tops, reverse=True) and all(t <= 0 for t in tops)
        assert entry.logprob == pytest.approx(max(tops), abs=1e-5)
        assert entry.token == entry.top_logprobs[0].token
    if choice.finish_reason == "length":
        assert b"".join(bytes(e.bytes) for e in content).decode() == choice.message.content

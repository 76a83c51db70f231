"""Prefix reuse on the real server: the next turn of a conversation prefills only what the last turn did not."""
from live_server import metrics


def test_the_next_turn_reuses_the_cached_conversation(client, base_url):
    messages = [{"role": "user", "content": "Name three rivers in Europe."}]
    first = client.chat.completions.create(model="default", messages=messages, temperature=0, max_tokens=12)
    before = metrics(base_url)
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "Which of them is the longest?"}]
    second = client.chat.completions.create(model="default", messages=messages, temperature=0, max_tokens=4)
    after = metrics(base_url)
    shared = after["prefix_shared_tokens"] - before.get("prefix_shared_tokens", 0)
    # the whole first prompt, and the reply as far as it re-tokenizes the same, came from the cache
    assert first.usage.prompt_tokens <= shared < second.usage.prompt_tokens

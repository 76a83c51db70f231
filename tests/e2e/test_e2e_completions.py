"""Legacy text completions against the real model: one prompt, a batch of prompts, echo, suffix."""
PROMPT = "The three primary colors are"


def complete(client, prompt, **kwargs):
    return client.completions.create(model="default", prompt=prompt, temperature=0, **kwargs)


def test_completion_of_one_prompt(client):
    response = complete(client, PROMPT, max_tokens=8)
    choice = response.choices[0]
    assert response.object == "text_completion" and len(response.choices) == 1
    assert choice.text and choice.index == 0 and choice.finish_reason in ("stop", "length")
    assert 0 < response.usage.completion_tokens <= 8


def test_completion_of_two_prompts(client):
    prompts = [PROMPT, "My favourite programming language is"]
    response = complete(client, prompts, max_tokens=6)
    assert [c.index for c in response.choices] == [0, 1]
    assert all(c.text for c in response.choices)
    alone = complete(client, prompts[1], max_tokens=6)
    assert response.choices[1].text == alone.choices[0].text
    assert response.usage.prompt_tokens > alone.usage.prompt_tokens


def test_echo_prepends_the_prompt(client):
    plain = complete(client, PROMPT, max_tokens=4).choices[0].text
    echoed = complete(client, PROMPT, max_tokens=4, echo=True).choices[0].text
    assert echoed == PROMPT + plain


def test_suffix_is_appended(client):
    plain = complete(client, PROMPT, max_tokens=4).choices[0].text
    suffixed = complete(client, PROMPT, max_tokens=4, suffix=" [END]").choices[0].text
    assert suffixed == plain + " [END]"

"""The seed's Python API: `from mistralrs import Runner, Which, ChatCompletionRequest`."""
from mistralrs import ChatCompletionRequest, CompletionRequest, Runner, Which

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_runner_answers_chat_and_completion_requests(smollm2_artifact):
    runner = Runner(which=Which.Artifact(str(smollm2_artifact("Q8_0"))), threads=2)
    try:
        res = runner.send_chat_completion_request(
            ChatCompletionRequest(model="default", messages=QUESTION, max_tokens=32, temperature=0.0))
        assert "Paris" in res.choices[0].message.content
        assert res.usage.completion_tokens > 0 and res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens

        chunks = list(runner.send_chat_completion_request(
            ChatCompletionRequest(messages=QUESTION, max_tokens=32, temperature=0.0, stream=True)))
        assert "".join(c.choices[0].delta.content for c in chunks) == res.choices[0].message.content

        completion = runner.send_completion_request(
            CompletionRequest(prompt="The capital of France is", max_tokens=4, temperature=0.0, n_choices=2))
        assert [c.index for c in completion.choices] == [0, 1]
        assert all("Paris" in c.text for c in completion.choices)
    finally:
        runner.engine.shutdown()

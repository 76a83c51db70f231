"""Runner for mistral.rs through its PyPI wheel `mistralrs` (bench venv only: the name collides with ours).

python bench/peers/run_mistralrs.py --model GGUF   (threads: RAYON_NUM_THREADS, set by bench/cpu.py)

The SDK takes text, not token ids: W1 goes through its chat API (its own copy of the GGUF's chat template),
W2 and top1 through raw completions of the prompt's text. Prefix caching is off for W1/W2 so that repeats
re-prefill; top1 (one 1-token completion per step) loads a second instance with it on, or it would take hours.
"""
import os
import time

from runner_protocol import StreamTimer, claim_stdout, prefill_result, runner_args, serve_runner

REPLY = claim_stdout()

import mistralrs  # noqa: E402
from mistralrs import ChatCompletionRequest, CompletionRequest, Runner, Which  # noqa: E402


class MistralRsRunner:
    def __init__(self, gguf: str):
        self.which = Which.GGUF(quantized_model_id=os.path.dirname(gguf), quantized_filename=os.path.basename(gguf))
        self.runner = Runner(which=self.which, token_source="none", prefix_cache_n=0, max_seqs=16)
        self._cached_runner = None

    def _encode(self, text: str) -> list[int]:
        return self.runner.tokenize_text(text, False, None)

    def _text(self, ids: list[int]) -> str:
        return self.runner.detokenize_text(ids, False)

    def w1(self, messages: list[dict], max_new: int, **_) -> dict:
        request = ChatCompletionRequest(model="default", messages=messages, max_tokens=max_new, temperature=0.0,
                                        stream=True, ignore_eos=True)
        timer = StreamTimer()
        usage, text = None, ""
        for chunk in self.runner.send_chat_completion_request(request):
            if chunk.choices and chunk.choices[0].delta.content:
                timer.token()
                text += chunk.choices[0].delta.content
            usage = getattr(chunk, "usage", None) or usage
        if usage is not None:
            timer.num_tokens = usage.completion_tokens
        return timer.result(prompt_tokens=usage.prompt_tokens if usage else None,
                            first_tokens=self._encode(text)[:16])

    def _complete(self, text: str, max_new: int, runner: Runner | None = None):
        request = CompletionRequest(model="default", prompt=text, max_tokens=max_new, temperature=0.0)
        return (runner or self.runner).send_completion_request(request)

    def w2(self, prompt_ids: list[int], **_) -> dict:
        text = self._text(prompt_ids)
        start = time.perf_counter()
        response = self._complete(text, 1)
        seconds = time.perf_counter() - start
        return prefill_result(response.usage.prompt_tokens, seconds,
                              first_tokens=self._encode(response.choices[0].text)[:1])

    def _next_token(self, ids: list[int]) -> int | None:
        """Greedy next token after `ids`; None when it is an end-of-sequence token (no text comes back)."""
        if self._cached_runner is None:
            self._cached_runner = Runner(which=self.which, token_source="none", max_seqs=1)
        choice = self._complete(self._text(ids), 1, self._cached_runner).choices[0]
        return self._encode(choice.text)[0] if choice.text else None

    def top1(self, prompts: list[list[int]], continuations: list[list[int]]) -> dict:
        """Teacher forcing through text: one 1-token completion per step (the SDK has no logits)."""
        out, retokenized = [], 0
        for prompt, continuation in zip(prompts, continuations):
            row = []
            for i in range(len(continuation)):
                ids = prompt + continuation[:i]
                retokenized += self._encode(self._text(ids)) != ids
                row.append(self._next_token(ids))
            out.append(row)
        return {"top1": out, "prefixes_not_round_tripping": retokenized}


def main() -> None:
    args = runner_args(threads=False)
    runner = MistralRsRunner(args.model)
    version = getattr(mistralrs, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version
        version = dist_version("mistralrs")
    serve_runner(REPLY, runner,
          {"runtime": "mistral.rs (PyPI wheel)", "version": version,
           "rayon_threads": os.environ.get("RAYON_NUM_THREADS")})


if __name__ == "__main__":
    main()

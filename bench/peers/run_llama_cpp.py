"""Runner for llama.cpp through llama-cpp-python (bench venv, built from its sdist for this CPU).

python bench/peers/run_llama_cpp.py --model GGUF [--threads 2]
"""
import time

from runner_protocol import StreamTimer, claim_stdout, prefill_result, runner_args, serve_runner, teacher_forced_top1

REPLY = claim_stdout()

import numpy as np  # noqa: E402
import llama_cpp  # noqa: E402


class LlamaCppRunner:
    def __init__(self, gguf: str, threads: int):
        self.llm = llama_cpp.Llama(model_path=gguf, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=threads,
                                   n_threads_batch=threads, verbose=False)

    def _tokens(self, prompt_ids: list[int]):
        """Greedy tokens forever (EOS does not stop `generate`); reset first so no cached prefix is reused."""
        self.llm.reset()
        return self.llm.generate(prompt_ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True)

    def w1(self, prompt_ids: list[int], max_new: int, **_) -> dict:
        timer = StreamTimer()
        tokens = []
        for token in self._tokens(prompt_ids):
            tokens.append(token)
            timer.token()
            if len(tokens) == max_new:
                break
        return timer.result(prompt_tokens=len(prompt_ids), first_tokens=tokens[:16])

    def w2(self, prompt_ids: list[int], **_) -> dict:
        start = time.perf_counter()
        token = next(self._tokens(prompt_ids))
        return prefill_result(len(prompt_ids), time.perf_counter() - start, first_tokens=[token])

    def _last_top1(self) -> int:
        return int(np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),)).argmax())

    def top1(self, prompts: list[list[int]], continuations: list[list[int]]) -> dict:
        return teacher_forced_top1(prompts, continuations, self._begin)

    def _begin(self, prompt: list[int]):
        self.llm.reset()
        self.llm.eval(prompt)

        def step(token: int) -> int:
            self.llm.eval([token])
            return self._last_top1()

        return self._last_top1(), step


def main() -> None:
    args = runner_args()
    runner = LlamaCppRunner(args.model, args.threads)
    system_info = llama_cpp.llama_print_system_info().decode()
    serve_runner(REPLY, runner,
          {"runtime": "llama.cpp (llama-cpp-python)", "version": llama_cpp.__version__, "system_info": system_info})


if __name__ == "__main__":
    main()

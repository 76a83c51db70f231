"""Runner for onnxruntime-genai (bench venv) on a model made by its builder.

python bench/peers/run_ort_genai.py --model DIR [--threads 2]
"""
import json
import time

from runner_protocol import StreamTimer, claim_stdout, prefill_result, runner_args, serve_runner, teacher_forced_top1

REPLY = claim_stdout()

import numpy as np  # noqa: E402
import onnxruntime_genai as og  # noqa: E402


class OrtGenaiRunner:
    def __init__(self, model_dir: str, threads: int):
        config = og.Config(model_dir)
        config.clear_providers()  # CPU
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
        self.model = og.Model(config)

    def _generator(self, max_length: int) -> og.Generator:
        params = og.GeneratorParams(self.model)
        # min_length == max_length: EOS is masked until the last token
        params.set_search_options(do_sample=False, max_length=max_length, min_length=max_length, batch_size=1)
        return og.Generator(self.model, params)

    def w1(self, prompt_ids: list[int], max_new: int, **_) -> dict:
        generator = self._generator(len(prompt_ids) + max_new)
        timer = StreamTimer()
        generator.append_tokens(np.array([prompt_ids], np.int32))
        tokens = []
        while not generator.is_done():
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
            timer.token()
        return timer.result(prompt_tokens=len(prompt_ids), first_tokens=tokens[:16])

    def w2(self, prompt_ids: list[int], **_) -> dict:
        generator = self._generator(len(prompt_ids) + 1)
        start = time.perf_counter()
        generator.append_tokens(np.array([prompt_ids], np.int32))
        generator.generate_next_token()
        token = int(generator.get_next_tokens()[0])
        return prefill_result(len(prompt_ids), time.perf_counter() - start, first_tokens=[token])

    def top1(self, prompts: list[list[int]], continuations: list[list[int]]) -> dict:
        max_length = max(len(p) + len(c) for p, c in zip(prompts, continuations)) + 1
        return teacher_forced_top1(prompts, continuations, lambda prompt: self._begin(prompt, max_length))

    def _begin(self, prompt: list[int], max_length: int):
        generator = self._generator(max_length)

        def step(tokens) -> int:
            generator.append_tokens(np.array([tokens], np.int32))
            return int(generator.get_logits()[0, -1].argmax())

        return step(prompt), lambda token: step([token])


def main() -> None:
    args = runner_args()
    runner = OrtGenaiRunner(args.model, args.threads)
    import onnxruntime
    serve_runner(REPLY, runner,
          {"runtime": "onnxruntime-genai", "version": og.__version__, "onnxruntime": onnxruntime.__version__})


if __name__ == "__main__":
    main()

"""Runner for onnxruntime-genai (bench venv) on a model made by its builder.

python bench/peers/run_ort_genai.py --model DIR [--threads 2]
"""
import argparse
import json
import time

from runner_protocol import StreamTimer, claim_stdout, prefill_result, serve

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
        out = []
        for prompt, continuation in zip(prompts, continuations):
            generator = self._generator(len(prompt) + len(continuation) + 1)
            generator.append_tokens(np.array([prompt], np.int32))
            row = [int(generator.get_logits()[0, -1].argmax())]
            for token in continuation[:-1]:
                generator.append_tokens(np.array([[token]], np.int32))
                row.append(int(generator.get_logits()[0, -1].argmax()))
            out.append(row)
        return {"top1": out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    runner = OrtGenaiRunner(args.model, args.threads)
    import onnxruntime
    serve(REPLY, {"w1": runner.w1, "w2": runner.w2, "top1": runner.top1},
          {"runtime": "onnxruntime-genai", "version": og.__version__, "onnxruntime": onnxruntime.__version__})


if __name__ == "__main__":
    main()

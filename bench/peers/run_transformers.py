"""Runner for HF transformers, eager attention, fp32 (bench venv): the baseline.

python bench/peers/run_transformers.py --model HF_DIR [--threads 2]
"""
import time

from runner_protocol import StreamTimer, claim_stdout, prefill_result, runner_args, serve_runner

REPLY = claim_stdout()

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, DynamicCache  # noqa: E402


class TransformersRunner:
    def __init__(self, model_dir: str, threads: int):
        torch.set_num_threads(threads)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
        self.model.eval()

    @torch.inference_mode()
    def _step(self, ids: list[int], cache: DynamicCache) -> torch.Tensor:
        """Logits [len(ids), V] after feeding `ids` on top of `cache`."""
        return self.model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True).logits[0]

    def w1(self, prompt_ids: list[int], max_new: int, **_) -> dict:
        timer = StreamTimer()
        cache = DynamicCache(config=self.model.config)
        tokens = [int(self._step(prompt_ids, cache)[-1].argmax())]
        timer.token()
        while len(tokens) < max_new:
            tokens.append(int(self._step([tokens[-1]], cache)[-1].argmax()))
            timer.token()
        return timer.result(prompt_tokens=len(prompt_ids), first_tokens=tokens[:16])

    def w2(self, prompt_ids: list[int], **_) -> dict:
        start = time.perf_counter()
        token = int(self._step(prompt_ids, DynamicCache(config=self.model.config))[-1].argmax())
        return prefill_result(len(prompt_ids), time.perf_counter() - start, first_tokens=[token])

    def top1(self, prompts: list[list[int]], continuations: list[list[int]]) -> dict:
        out = []
        for prompt, continuation in zip(prompts, continuations):
            logits = self._step(prompt + continuation[:-1], DynamicCache(config=self.model.config))
            out.append(logits[len(prompt) - 1:].argmax(-1).tolist())
        return {"top1": out}


def main() -> None:
    args = runner_args()
    runner = TransformersRunner(args.model, args.threads)
    serve_runner(REPLY, runner,
          {"runtime": "transformers (eager, fp32)", "version": transformers.__version__, "torch": torch.__version__})


if __name__ == "__main__":
    main()

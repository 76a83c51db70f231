"""Runner for our compiled artifact, in-process through the Engine (run with the project's own venv).

python bench/peers/run_ours.py --artifact DIR [--threads 2]
"""
import time

from runner_protocol import StreamTimer, claim_stdout, prefill_result, runner_args, serve_runner

REPLY = claim_stdout()

import numpy as np  # noqa: E402

from mistralrs.compiler.spot_check import teacher_forced_logits  # noqa: E402
from mistralrs.runtime.artifact import open_artifact  # noqa: E402
from mistralrs.runtime.engine import Engine, EngineConfig  # noqa: E402
from mistralrs.runtime.executors import create_executor  # noqa: E402
from mistralrs.runtime.outputs import ChoiceDelta, RequestDone, RequestError  # noqa: E402
from mistralrs.runtime.request import GenerationRequest, SamplingParams, StoppingCriteria  # noqa: E402


class OursRunner:
    def __init__(self, artifact_dir: str, threads: int):
        self.artifact = open_artifact(artifact_dir)
        self.threads = threads
        # each repeat of W1/W2 sends the same prompt: with prefix sharing, every one after the first would time a
        # cache hit instead of a prefill. One request at a time needs one KV slot: an idle runner then has no
        # server-sized cache to fault in (runtime/memory.py) while another runner is timed
        self.engine = Engine(self.artifact, EngineConfig(max_batch=1, max_seq_len=1024, threads=threads,
                                                         prefix_sharing=False))

    def _generate(self, prompt_ids: list[int], max_new: int) -> tuple[StreamTimer, list[int], RequestDone]:
        request = GenerationRequest(list(prompt_ids), SamplingParams(temperature=0.0),
                                    StoppingCriteria(max_tokens=max_new, ignore_eos=True))
        timer = StreamTimer()
        tokens: list[int] = []
        for event in self.engine.submit(request):
            if isinstance(event, ChoiceDelta) and event.token_ids:
                timer.token(len(event.token_ids))
                tokens += event.token_ids
            elif isinstance(event, RequestError):
                raise RuntimeError(event.message)
            elif isinstance(event, RequestDone):  # deltas with no text yet are not sent: count from usage
                timer.token(0)
                timer.num_tokens = event.usage.completion_tokens
                return timer, tokens, event

    def w1(self, prompt_ids: list[int], max_new: int, **_) -> dict:
        timer, tokens, done = self._generate(prompt_ids, max_new)
        return timer.result(prompt_tokens=done.usage.prompt_tokens, first_tokens=tokens[:16])

    def w2(self, prompt_ids: list[int], **_) -> dict:
        start = time.perf_counter()
        _, tokens, done = self._generate(prompt_ids, 1)
        return prefill_result(done.usage.prompt_tokens, time.perf_counter() - start, first_tokens=tokens)

    def _executor(self, max_len: int):
        return create_executor(self.artifact, 1, max_len, self.threads)

    def greedy(self, prompts: list[list[int]], steps: int) -> dict:
        """Greedy continuations (the reference that `top1` is checked against)."""
        executor = self._executor(max(map(len, prompts)) + steps + 1)
        out = []
        for prompt in prompts:
            tokens = [int(executor.forward(0, np.array([prompt]), np.array([0]))[0].argmax())]
            for i in range(steps - 1):
                logits = executor.forward(0, np.array([[tokens[-1]]]), np.array([len(prompt) + i]))
                tokens.append(int(logits[0].argmax()))
            out.append(tokens)
        return {"tokens": out}

    def top1(self, prompts: list[list[int]], continuations: list[list[int]]) -> dict:
        executor = self._executor(max(map(len, prompts)) + max(map(len, continuations)) + 1)
        return {"top1": [teacher_forced_logits(executor, p, c).argmax(-1).tolist()
                         for p, c in zip(prompts, continuations)]}


def main() -> None:
    args = runner_args("--artifact")
    runner = OursRunner(args.artifact, args.threads)
    import onnxruntime
    serve_runner(REPLY, runner,
          {"runtime": "mistralrs-compile (ours)", "isq": runner.artifact.isq, "onnxruntime": onnxruntime.__version__})


if __name__ == "__main__":
    main()

"""The executor's batching contract: rows of one forward are independent, and prefill may come in chunks."""
import numpy as np
import pytest
from tiny_models import batched_decode, executor_for, greedy_run, max_abs

TOLERANCE = 1e-4
SHORT, LONG = [5, 17, 42, 7, 99], [3, 8, 120, 64, 11, 250, 9, 31, 77]
FAMILIES = ["llama-untied", "qwen3"]


@pytest.fixture(scope="module", params=FAMILIES)
def executor(request, tiny_artifact):
    return executor_for(tiny_artifact(request.param), max_slots=4)


def test_batched_decode_equals_each_sequence_alone(executor):
    steps = 4
    _, short_alone = greedy_run(executor, SHORT, steps, slot=2)
    _, long_alone = greedy_run(executor, LONG, steps, slot=3)
    for step, rows in enumerate(batched_decode(executor, [SHORT, LONG], steps)):
        assert rows.shape[0] == 2
        assert max_abs(rows[0], short_alone[step]) < TOLERANCE, step
        assert max_abs(rows[1], long_alone[step]) < TOLERANCE, step


@pytest.mark.parametrize("chunks", [[6, 6], [5, 4, 3], [1, 10, 1]])
def test_chunked_prefill_equals_one_shot(executor, chunks):
    prompt = (LONG + SHORT)[:12]
    one_shot = executor.forward(0, np.array([prompt]), np.array([0]))[0]
    start = 0
    for size in chunks:
        chunked = executor.forward(1, np.array([prompt[start:start + size]]), np.array([start]))[0]
        start += size
    assert max_abs(chunked, one_shot) < TOLERANCE
    token = np.array([[int(one_shot.argmax())]] * 2)
    next_rows = executor.forward(0, token, np.array([len(prompt)] * 2))
    assert max_abs(next_rows[0], next_rows[1]) < TOLERANCE

"""``parallel.data_parallel_size``: N copies of a ``clm`` model in worker processes score like one.

On the CPU with 2 workers (1 thread each) and the tiny GPT-2: a whole trial (ranking, generation and
perplexity tasks) gives the one-process metrics and predictions within 1e-5, in the same order; a
worker that raises or dies fails the call with one line, without hanging; planning refuses the option
for a predictor without the capability, and a SLURM job of a data-parallel setting asks for a GPU per copy.
"""

from __future__ import annotations

import math
import os
import signal
import time
from typing import Any

import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.clm.data_parallel import WorkerError, split_groups
from fewshot_eval.evaluate.backends.predictor import Request

MODEL = {"name": "tiny_gpt2", "predictor": "clm", "weights": "tiny-gpt2"}
PARAMS = {
    "seed": 0, "scoring": "sum", "predictor": "clm", "device": "cpu", "dtype": "float32", "batch_size": 4,
    "max_length": 256, "train_sep": "\n\n", "n_eval_samples": 12, "languages": None, "train_languages": None,
    "max_new_tokens": 6,
}
TASKS = ["copa_demo", "nli_demo", "qa_demo", "wiki_demo"]  # two ranking shapes, generation, rolling perplexity


def dp_model(n: int) -> dict[str, Any]:
    return {**MODEL, "parallel": {"data_parallel_size": n}}


@pytest.fixture(scope="module")
def two_workers():
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    pred = CausalLMPredictor.from_settings(dp_model(2), PARAMS)
    yield pred
    pred.pool.close()


def close(a: Any, b: Any, where: str = "") -> None:
    """``a`` equals ``b``, floats within 1e-5 (nested dicts/lists)."""
    if isinstance(a, float) or isinstance(b, float):
        assert (a is None and b is None) or math.isclose(a, b, rel_tol=0, abs_tol=1e-5) or (math.isnan(a) and math.isnan(b)), (where, a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_a_trial_on_two_workers_equals_one_process(two_workers) -> None:
    from fewshot_eval.evaluate.evaluator import FewShotEvaluator

    one = FewShotEvaluator(MODEL, PARAMS).run_trial(TASKS, PARAMS, 2, 0)
    dp = FewShotEvaluator(dp_model(2), PARAMS, predictor=two_workers).run_trial(TASKS, PARAMS, 2, 0)
    assert set(dp.metrics) == set(one.metrics) and len(dp.metrics) >= 4
    close(dp.metrics, one.metrics, "metrics")
    close(dp.predictions, one.predictions, "predictions")  # rows in the same order, log-probs within 1e-5, same generations
    assert dp.info["data_parallel_size"] == 2 and dp.info["devices"] == ["cpu", "cpu"]


def test_requests_come_back_in_order_and_batches_are_reported(two_workers) -> None:
    demos = "Q: is the sky blue? A: Yes\n\nQ: is fire cold? A: No\n\n"
    reqs = [Request(demos + f"Q: {q}? A:", c) for q in ("is water wet", "do fish fly", "is ice hot", "can cats fly")
            for c in (" Yes", " No", " Not at all")] + [Request("The cat sat on", " the mat"), Request("", "Hello")]
    reqs = reqs[::-1] + reqs[:3]  # another order, and repeats
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    want = CausalLMPredictor.from_settings(MODEL, PARAMS).loglikelihood(reqs)
    reported: dict[int, Any] = {}
    two_workers.on_batch = lambda idx, res: reported.update(zip(idx, res))
    try:
        got = two_workers.loglikelihood(reqs)
    finally:
        two_workers.on_batch = None
    assert sorted(reported) == list(range(len(reqs)))  # every request reported once done, by its index in the call
    for w, g, r in zip(want, got, (reported[i] for i in range(len(reqs)))):
        assert g.tokens == w.tokens == r.tokens and g.greedy == w.greedy and g.logprobs == r.logprobs
        assert max(abs(a - b) for a, b in zip(g.logprobs, w.logprobs)) < 1e-5


def test_a_worker_that_raises_fails_the_call_with_one_line(two_workers) -> None:
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as err:  # clm refuses an empty continuation, in the worker that got it
        two_workers.loglikelihood([Request("Hello there", " world"), Request("Something else", "")])
    line = str(err.value)
    assert "\n" not in line and "data-parallel worker" in line and "ValueError: empty continuation" in line, line
    assert time.monotonic() - t0 < 30
    # the workers stay usable: the next call (the next job of a sequential sweep) gets its own results
    docs = [Request(f"Document {i} says", " something") for i in range(8)]
    assert [r.tokens for r in two_workers.loglikelihood(docs)] == [two_workers.encode_pair(r.context, r.continuation)[1] for r in docs]


def test_a_killed_worker_fails_the_call_without_hanging(two_workers) -> None:
    pool = two_workers.pool
    os.kill(pool.procs[1].pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as err:
        two_workers.loglikelihood([Request(f"Document {i} says", " something") for i in range(8)])
    assert time.monotonic() - t0 < 10
    line = str(err.value)
    assert "\n" not in line and "data-parallel worker 1 of 2" in line and "killed by signal SIGKILL" in line, line
    assert pool.closed and not any(p.is_alive() for p in pool.procs)  # the other worker is stopped too
    with pytest.raises(WorkerError, match="stopped after an error"):  # the job does not go on with half its workers
        two_workers.loglikelihood([Request("Hello", " world")])


def test_split_keeps_groups_together_and_balances() -> None:
    keys = ["D x1", "D x2", "D x1", "E y", "D x3", "E z", "D x2"]
    parts = split_groups(keys, [1] * len(keys), 2)
    assert sorted(i for p in parts for i in p) == list(range(len(keys)))
    where = {keys[i]: r for r, p in enumerate(parts) for i in p}
    assert all(where[keys[i]] == r for r, p in enumerate(parts) for i in p)  # one key, one worker
    assert [where[k] for k in sorted(where)] == sorted(where[k] for k in sorted(where))  # sorted keys cut into contiguous runs
    assert all(parts)
    assert sorted(map(len, split_groups(["a"], [1], 3))) == [0, 0, 1]  # fewer groups than workers: some idle


@pytest.mark.parametrize("model, params, match", [
    ({**MODEL, "predictor": "random", "parallel": {"data_parallel_size": 2}}, {}, r"parallel.data_parallel_size=2 applies to predictors clm.*not 'random'"),
    ({**MODEL, "parallel": {"data_parallel_size": 2, "device_map": "auto"}}, {}, r"data_parallel_size=2 copies the whole model.*device_map=auto shards it"),
    ({**MODEL, "parallel": {"data_parallel_size": 2}}, {"device": "cuda:1"}, r"worker i on cuda:i, so device=cuda:1"),
])
def test_planning_refuses_what_cannot_run(model: dict, params: dict, match: str) -> None:
    from fewshot_eval.evaluate.backends.model_checks import check_model

    with pytest.raises(ConfigError, match=match):
        check_model("tiny", model, params)


def test_the_setting_key_is_an_int_of_at_least_one() -> None:
    from fewshot_eval.settings import model_setting

    assert model_setting({"name": "x", "weights": "tiny-gpt2"}, "x")["parallel"]["data_parallel_size"] == 1
    with pytest.raises(ConfigError, match=r"model/x.yaml: parallel.data_parallel_size must be an integer >= 1 .*got 0"):
        model_setting({"name": "x", "weights": "tiny-gpt2", "parallel": {"data_parallel_size": 0}}, "x")
    with pytest.raises(ConfigError, match=r"key 'parallel.data_parallel_size' must be int, got 'two'"):
        model_setting({"name": "x", "weights": "tiny-gpt2", "parallel": {"data_parallel_size": "two"}}, "x")


@pytest.mark.parametrize("predictor, dp, asked, gpus", [
    ("clm", 4, 1, 4), ("clm", 4, 8, 8),  # at least one GPU per copy, on one node
    ("clm", 4, 0, 0),  # a CPU job stays one (the copies share its CPUs)
    ("clm", 1, 2, 2), ("random", 1, 2, 0),
])
def test_slurm_jobs_ask_for_a_gpu_per_copy(predictor: str, dp: int, asked: int, gpus: int) -> None:
    from types import SimpleNamespace

    from fewshot_eval.plan.unit import unit_resources
    from fewshot_eval.settings import model_setting

    model = model_setting({**dp_model(dp), "predictor": predictor, "resources": {"gpus_per_node": asked}}, "x")
    assert unit_resources(SimpleNamespace(model=model, params={"predictor": predictor}))["gpus_per_node"] == gpus


def test_vllm_takes_the_option_as_its_own_and_asks_for_its_gpus() -> None:
    """vLLM's ``data_parallel_size`` (the engine's copies, tensor_parallel_size GPUs each): only the plumbing
    runs here (no GPU, no vllm); the engine's own data parallelism is not exercised by these tests."""
    from fewshot_eval.evaluate.registry import predictor_class

    vllm = predictor_class("vllm")
    assert vllm.data_parallel
    model = {**MODEL, "predictor": "vllm", "parallel": {"data_parallel_size": 2, "tensor_parallel_size": 2}}
    assert vllm.node_gpus(model, 2) == 4 and vllm.node_gpus(model, 0) == 0

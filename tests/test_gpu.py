"""GPU backends on the tiny GPT-2: ``vllm`` and ``clm`` sharded over GPUs score like ``clm`` on one device.

Skipped without a CUDA GPU (and, for vLLM, without the vllm package; for sharding, with fewer
than 2 GPUs) -- unless ``FEWSHOT_REQUIRE_GPU=<n>`` says that n GPUs and vllm must be there, which
makes a missing one a failure (``benchmarks/gpu_check.sh`` sets it to the GPUs it finds). Run them on
a GPU machine with ``bash benchmarks/gpu_check.sh``. Without a GPU, the planning errors of the vllm
predictor are checked.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.predictor import Request


def _cuda() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


GPUS = _cuda()
HAS_VLLM = importlib.util.find_spec("vllm") is not None
REQUIRED_GPUS = int(os.environ.get("FEWSHOT_REQUIRE_GPU") or 0)


def need(gpus: int, vllm: bool = False) -> None:
    """Skip (fail when FEWSHOT_REQUIRE_GPU asks for that many GPUs) without ``gpus`` GPUs or, with ``vllm``, the vllm package."""
    why = f"needs {gpus} CUDA GPU(s), {GPUS} here" if GPUS < gpus else "needs vllm (pip install vllm)" if vllm and not HAS_VLLM else None
    if why and REQUIRED_GPUS >= gpus:
        pytest.fail(f"{why} (FEWSHOT_REQUIRE_GPU={REQUIRED_GPUS})")
    if why:
        pytest.skip(why)


# |vllm - clm| allowed per token, float32: vLLM's kernels sum in another order than PyTorch's. On the CPU
# 1.6e-5 per candidate is measured (tests/test_served_vllm.py, which allows 5e-5); the same bound here, where
# the test prints what the GPU gives (benchmarks/gpu_check.sh keeps it in gpu_check.log). Sharding runs the
# same kernels on other devices: float32 rounding only.
VLLM_TOL = 5e-5
SHARDED_TOL = 1e-5

DEMOS = "Question: is the sky blue? Answer: Yes\n\nQuestion: is fire cold? Answer: No\n\n"
REQUESTS = [Request(DEMOS + f"Question: {q}? Answer:", c) for q in ("is water wet", "do fish fly") for c in (" Yes", " No", " Maybe")]
REQUESTS += [Request("The cat sat on", " the mat because it was warm"), Request("", "Hello"), Request("Answer: ", "True")]


def clm_scores(**model):
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor, load_model

    try:
        pred = CausalLMPredictor.from_settings({"name": "tiny", "weights": "tiny-gpt2", **model}, {"device": "cuda", "batch_size": 4})
        return pred.loglikelihood(REQUESTS)
    finally:
        load_model.cache_clear()


def test_vllm_tp1_scores_like_clm():
    need(1, vllm=True)
    from fewshot_eval.evaluate.backends.vllm_engine import VLLMPredictor

    ref = clm_scores()
    model = {"name": "tiny", "predictor": "vllm", "weights": "tiny-gpt2",
             "parallel": {"tensor_parallel_size": 1, "engine_args": {"gpu_memory_utilization": 0.3}}}
    got = VLLMPredictor.from_settings(model, {"dtype": "float32"}).loglikelihood(REQUESTS)
    worst = 0.0
    for a, b in zip(got, ref):
        assert a.tokens == b.tokens  # the same context/continuation split
        worst = max(worst, *(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)))
        assert a.greedy == b.greedy
    print(f"max per-token |vllm (GPU, tp=1) - clm (GPU)| = {worst:.2e}")
    assert worst < VLLM_TOL, worst
    for i in range(0, 6, 3):  # same argmax over each example's candidates
        assert max(range(3), key=lambda k: got[i + k].total) == max(range(3), key=lambda k: ref[i + k].total)


def test_clm_sharded_over_two_gpus_scores_like_one():
    need(2)
    ref = clm_scores()
    got = clm_scores(parallel={"device_map": "balanced", "max_memory": {0: "1MB", 1: "1GB"}})
    worst = max(abs(x - y) for a, b in zip(got, ref) for x, y in zip(a.logprobs, b.logprobs))
    print(f"max per-token |clm over 2 GPUs - clm on 1| = {worst:.2e}")
    assert worst < SHARDED_TOL, worst


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed here")
def test_without_vllm_planning_says_what_to_install():
    from fewshot_eval.evaluate.backends.vllm_engine import VLLMPredictor

    with pytest.raises(ConfigError, match=r"predictor 'vllm' needs the vllm package.*pip install vllm"):
        VLLMPredictor.check_settings({"name": "m", "weights": "tiny-gpt2"}, {})


def test_the_moe_example_is_a_vllm_setting_over_two_nodes(workdir):
    """conf/model/moe_128exp_lang16.yaml: vLLM, TP=8 x PP=2 over 2 nodes x 8 GPUs; its dry run says what is missing."""
    from fewshot_eval.api import plan

    _, jobs = plan(["model=moe_128exp_lang16", "task=copa_demo", f"output_dir={workdir}", "dry_run=true"])
    u = jobs[0].unit
    assert u.model["predictor"] == "vllm" and u.model["parallel"]["tensor_parallel_size"] * u.model["parallel"]["pipeline_parallel_size"] == 16
    assert u.model["resources"]["nodes"] * u.model["resources"]["gpus_per_node"] == 16
    if not HAS_VLLM:
        assert jobs[0].status == "error" and "needs the vllm package" in jobs[0].detail and "pip install vllm" in jobs[0].detail

"""``clm`` with ``parallel.device_map``: a model sharded by accelerate scores like one on one device.

No GPU here, so the split is forced with ``max_memory``: part of the tiny GPT-2 stays in CPU
memory, the rest is offloaded to disk and streamed in by accelerate's hooks layer by layer (from
the safetensors checkpoint itself; ``offload_folder`` is where other formats would be written).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.clm import CausalLMPredictor, load_model
from fewshot_eval.evaluate.backends.predictor import Request

DEMOS = "Question: is the sky blue? Answer: Yes\n\nQuestion: is fire cold? Answer: No\n\n"
REQUESTS = [
    Request(DEMOS + f"Question: {q}? Answer:", c)
    for q in ("is water wet", "do fish fly", "is the sun hot")
    for c in (" Yes", " No", " Maybe not")
] + [Request("The cat sat on", " the mat because it was warm"), Request("", "Hello")]


def scores(model: dict) -> tuple[list[list[float]], CausalLMPredictor]:
    pred = CausalLMPredictor.from_settings({"name": "tiny", "weights": "tiny-gpt2", **model}, {"device": "cpu", "batch_size": 4})
    return [r.logprobs for r in pred.loglikelihood(REQUESTS)], pred


@pytest.mark.slow
def test_a_model_split_over_cpu_and_disk_gives_the_single_device_logliks(tmp_path: Path) -> None:
    single, _ = scores({})
    parallel = {"device_map": "auto", "max_memory": {"cpu": "700KB"}, "offload_folder": str(tmp_path / "offload")}
    try:
        sharded, pred = scores({"parallel": parallel})
        placement = set(pred.model.hf_device_map.values())
    finally:
        load_model.cache_clear()  # the offloaded model is not what other tests expect
    assert placement == {"cpu", "disk"}, placement  # really split: some modules in memory, some on disk
    assert pred.device == "cpu" and any("device_map=auto" in n for n in pred.notes)
    assert len(sharded) == len(single)
    for a, b in zip(sharded, single):
        assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-5


@pytest.mark.parametrize("parallel, match", [
    ({"device_map": "everywhere"}, r"parallel.device_map 'everywhere' is not one of auto, balanced"),
    ({"device_map": "auto", "max_memory": "70GiB"}, r"parallel.max_memory must be a mapping"),
])
def test_bad_sharding_options_are_refused_before_loading(parallel: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CausalLMPredictor.check_settings({"name": "tiny", "weights": "tiny-gpt2", "parallel": parallel}, {})

"""A full FewShotEvaluator run with the tiny GPT-2 through the public interface."""

from __future__ import annotations

import json

import pytest

from fewshot_eval.evaluate import build_evaluator


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("fewshot_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("FEWSHOT_EVAL_CACHE", str(d))
    yield d
    mp.undo()


def test_tiny_gpt2_build_is_deterministic_and_cached(cache, tmp_path):
    import torch
    from safetensors.torch import load_file

    from fewshot_eval.evaluate.backends.tiny_model import build_tiny_gpt2, tiny_gpt2_path

    a = tiny_gpt2_path()
    assert a == cache / "tiny-gpt2-v1" and (a / "tokenizer.json").is_file()
    mtime = (a / "model.safetensors").stat().st_mtime
    assert tiny_gpt2_path() == a and (a / "model.safetensors").stat().st_mtime == mtime  # built once
    b = build_tiny_gpt2(tmp_path / "again")
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_full_run_with_tiny_gpt2(cache):
    model = {"name": "tiny_gpt2", "predictor": "clm", "weights": "tiny-gpt2"}
    params = {
        "seed": 0, "scoring": "sum", "predictor": "clm", "device": "auto", "dtype": "float32", "batch_size": 16,
        "max_length": 160, "train_sep": "\n\n", "n_eval_samples": 8, "description": "Answer the questions.",
        "templates": {"nli_demo": ["default", "gpt3"]}, "languages": None, "train_languages": None,
    }
    ev = build_evaluator(model, params)
    lm = ev.predictor
    r0 = ev.run_trial(["copa_demo", "nli_demo"], params, 4, 0)
    r1 = ev.run_trial(["copa_demo", "nli_demo"], params, 4, 1)
    assert ev.predictor is lm  # loaded once, reused across trials
    assert set(r0.metrics) == {"copa_demo.default", "nli_demo.default", "nli_demo.gpt3"}
    again = build_evaluator(model, params).run_trial(["copa_demo", "nli_demo"], params, 4, 0)
    assert again.metrics == r0.metrics  # reproducible
    assert r0.info["demonstrations"]["copa_demo.default"]["ids"] != r1.info["demonstrations"]["copa_demo.default"]["ids"]
    json.dumps([r0.metrics, r0.predictions, r0.info])
    # max_length 160 is too short for 4 demonstrations: as many as fit are kept, the test prompt never cut
    for sid, rows in r0.predictions.items():
        info = r0.info["demonstrations"][sid]
        assert info["sampled"] == 4 and 0 <= info["kept_min"] <= info["kept_max"] < 4
        for row in rows:
            assert row["prompt"].startswith("Answer the questions.\n\n")
            assert row["prompt"].count("\n\n") == row["n_demos"] + 1
            longest = max(lm.num_tokens(row["prompt"] + c["text"]) for c in row["candidates"])
            assert longest <= 161
            if row["n_demos"] < 4:  # one more would not fit
                assert row["n_demos"] < info["sampled"]
            assert sum(c["n_tokens"] for c in row["candidates"]) > 0
            assert row["pred"] == max(row["candidates"], key=lambda c: c["score"])["label"]
    assert any("kept only" in w for w in r0.info["warnings"])
    assert r0.info["predictor"] == "clm" and r0.info["device"] == "cpu"


def test_model_is_loaded_once_per_process_and_setting(cache):
    model = {"name": "tiny_gpt2", "predictor": "clm", "weights": "tiny-gpt2"}
    params = {"device": "cpu", "dtype": "float32", "batch_size": 4, "max_length": None}
    a = build_evaluator(model, params).predictor
    b = build_evaluator(model, {**params, "batch_size": 16, "max_length": 64}).predictor
    assert b.model is a.model and b.tokenizer is a.tokenizer  # shared weights ...
    assert (a.batch_size, b.batch_size, b.max_length) == (4, 16, 64)  # ... per-job settings
    c = build_evaluator(model, {**params, "dtype": "bfloat16"}).predictor
    assert c.model is not a.model and str(c.model.dtype) == "torch.bfloat16"


def test_the_built_model_dir_follows_the_umask(tmp_path) -> None:
    """A shared FEWSHOT_EVAL_CACHE: colleagues can read the tiny model (mkdtemp alone would make it 0700)."""
    import os
    import stat

    from fewshot_eval.evaluate.backends.tiny_model import build_tiny_gpt2

    old = os.umask(0o022)
    try:
        path = build_tiny_gpt2(tmp_path / "tiny")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


def test_hf_overrides_change_the_loaded_config_and_the_identity():
    """GPT-2's fused tanh GELU (transformers' gelu_pytorch_tanh) for its Python gelu_new: the same
    function to float rounding, so log-likelihoods agree closely -- but it is another result."""
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor
    from fewshot_eval.evaluate.backends.predictor import Request
    from fewshot_eval.plan.identity import job_identity

    plain = CausalLMPredictor.from_settings({"name": "t", "weights": "tiny-gpt2"}, {"device": "cpu"})
    fused = CausalLMPredictor.from_settings({"name": "t", "weights": "tiny-gpt2", "hf_overrides": {"activation_function": "gelu_pytorch_tanh"}},
                                            {"device": "cpu"})
    assert plain.model.config.activation_function == "gelu_new"
    assert fused.model.config.activation_function == "gelu_pytorch_tanh"
    assert type(fused.model.transformer.h[0].mlp.act).__name__ != type(plain.model.transformer.h[0].mlp.act).__name__
    reqs = [Request("The cat sat on the", " mat."), Request("Paris is the capital of", " France, of course.")]
    a, b = plain.loglikelihood(reqs), fused.loglikelihood(reqs)
    for x, y in zip(a, b):
        assert max(abs(p - q) for p, q in zip(x.logprobs, y.logprobs)) < 1e-4
    base = {"name": "t", "predictor": "clm", "weights": "tiny-gpt2", "revision": None, "chat": None}
    same = job_identity({**base, "hf_overrides": {}}, ["copa_demo"], {}, 0)
    assert same == job_identity(base, ["copa_demo"], {}, 0)  # empty: the identity of results written before the field existed
    assert job_identity({**base, "hf_overrides": {"activation_function": "gelu_pytorch_tanh"}}, ["copa_demo"], {}, 0) != same

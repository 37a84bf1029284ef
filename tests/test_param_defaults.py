"""Evaluation params that a caller leaves out (the Python API, tests) take their defaults from
conf/config.yaml, the one place they are written; the evaluator holds no second copy."""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose, initialize_config_dir

from fewshot_eval import config
from fewshot_eval.config import EVAL_KEYS, conf_dir, default_params, eval_param, run_values


def test_default_params_are_the_run_params_hydra_composes() -> None:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["model=random", "task=copa_demo"])
    composed = run_values(cfg)
    assert default_params() == {k: composed.get(k) for k in EVAL_KEYS}
    assert default_params()["train_sep"] == "\n\n" and default_params()["unconditional_prompt"] == "Answer:"


def test_eval_param_keeps_a_given_value_and_fills_a_missing_or_null_one() -> None:
    assert eval_param({"train_sep": " | "}, "train_sep") == " | "
    assert eval_param({"train_sep": ""}, "train_sep") == ""  # empty is a value, not a gap
    assert eval_param({}, "train_sep") == eval_param({"train_sep": None}, "train_sep") == default_params()["train_sep"]


def test_the_schema_types_every_param_and_the_config_holds_every_default() -> None:
    """fewshot_eval/param_schema.py has one field per run and evaluation param (no default: conf/config.yaml
    holds them), and every packaged default passes the schema."""
    from fewshot_eval.param_schema import EVAL_FIELDS, RUN_FIELDS, check_values

    assert set(EVAL_FIELDS) == set(EVAL_KEYS) and set(RUN_FIELDS) == set(config.RUN_KEYS)
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in [*EVAL_FIELDS.values(), *RUN_FIELDS.values()])
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        values = run_values(compose("config", overrides=["model=random", "task=copa_demo"]))
    assert set(EVAL_FIELDS) - set(values) == {"allowed_nshot"}  # a task setting's own key, no top-level default
    check_values({k: values[k] for k in RUN_FIELDS}, {k: values[k] for k in EVAL_FIELDS if k in values}, ["copa_demo"])


def test_typed_params_fill_gaps_from_the_config_and_keep_a_null_that_is_a_value() -> None:
    from fewshot_eval.param_schema import typed_params

    p = typed_params({"seed": 5, "scoring": None, "calibrator": None})
    assert p.seed == 5 and p.scoring == default_params()["scoring"] and p.calibrator is None
    assert p.train_sep == default_params()["train_sep"] and p.batch_size == default_params()["batch_size"]


@pytest.fixture
def other_defaults(monkeypatch: pytest.MonkeyPatch) -> dict:
    """conf/config.yaml as if it said train_sep ' ### ' and temperature 0.5: the code must follow it."""
    changed = {**default_params(), "train_sep": " ### ", "unconditional_prompt": "Q:", "temperature": 0.5}
    monkeypatch.setattr(config, "default_params", lambda: dict(changed))
    return changed


def test_the_evaluator_joins_demonstrations_with_the_configured_train_sep(other_defaults: dict) -> None:
    from fewshot_eval.evaluate import build_evaluator

    params = {"seed": 0, "predictor": "random", "n_eval_samples": 2}  # no train_sep
    res = build_evaluator({"name": "random", "predictor": "random"}, params).run_trial(["copa_demo"], params, 2, 0)
    prompt = res.predictions["copa_demo.default"][0]["prompt"]
    assert prompt.count(" ### ") == 2 and "\n\n" not in prompt
    explicit = {**params, "train_sep": "\n\n"}
    res = build_evaluator({"name": "random", "predictor": "random"}, explicit).run_trial(["copa_demo"], explicit, 2, 0)
    assert res.predictions["copa_demo.default"][0]["prompt"].count("\n\n") == 2


def test_generation_settings_default_to_the_configured_values(other_defaults: dict) -> None:
    from fewshot_eval.evaluate.tasks.definitions import load_task_def
    from fewshot_eval.evaluate.tasks.generation_task import generation_settings

    td = dataclasses.replace(load_task_def("qa_demo"), until=None)  # a task without its own stop strings
    settings = generation_settings(td, {"do_sample": True})
    assert settings["until"] == [" ### "] and settings["temperature"] == 0.5
    assert generation_settings(td, {"train_sep": "\n", "do_sample": True, "temperature": 2.0})["until"] == ["\n"]


def test_unconditional_norm_scores_after_the_configured_prompt(other_defaults: dict, tmp_path) -> None:
    import torch

    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor
    from fewshot_eval.evaluate.backends.tiny_model import build_tiny_gpt2
    from fewshot_eval.evaluate.evaluator import FewShotEvaluator

    torch.set_num_threads(2)
    lm = CausalLMPredictor.from_settings({"name": "tiny", "weights": str(build_tiny_gpt2(tmp_path / "tiny"))}, {"device": "cpu", "batch_size": 4})
    contexts: list[str] = []

    class Recording(CausalLMPredictor):
        def loglikelihood(self, requests):
            contexts.extend(r.context for r in requests)
            return super().loglikelihood(requests)

    ev = FewShotEvaluator({"name": "tiny"}, {}, predictor=Recording(lm.model, lm.tokenizer, batch_size=4))
    ev.run_trial(["copa_demo"], {"seed": 0, "scoring": "unconditional-norm", "n_eval_samples": 2}, 0, 0)  # no unconditional_prompt
    assert "Q:" in contexts and "Answer:" not in contexts

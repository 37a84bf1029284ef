"""Every packaged config composes; settings validate; the precedence order holds layer by layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from fewshot_eval.api import plan
from fewshot_eval.config import ConfigError, conf_dir, effective_params
from fewshot_eval.settings import model_setting, site_profile, task_setting


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("group", ["model", "task", "models", "tasks", "experiment", "site"])
def test_every_option_of_every_group_composes(group: str) -> None:
    assert options(group), f"no packaged {group} configs"
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for name in options(group):
            cfg = compose("config", overrides=[f"{group}={name}"], return_hydra_config=True)
            if group == "model":
                assert model_setting(cfg.model, name)["name"]
            elif group == "task":
                assert task_setting(cfg.task, name)["tasks"]
            elif group == "site":
                assert site_profile(cfg.site, name)["description"]
            else:  # presets and experiments define a sweep
                assert cfg.hydra.sweeper.params, f"{group}/{name} defines no sweep"


def test_every_experiment_plans(tmp_path: Path) -> None:
    for name in options("experiment"):
        _, jobs = plan([f"experiment={name}", f"output_dir={tmp_path}"])
        assert jobs, name


def test_model_setting_errors_name_file_and_key() -> None:
    with pytest.raises(ConfigError, match=r"model/x.yaml: unknown key 'weigths'.*Valid keys: .*weights"):
        model_setting({"name": "x", "predictor": "random", "weigths": "a"}, "x")
    with pytest.raises(ConfigError, match=r"model/x.yaml: key 'max_parallel' must be int, got 'two'"):
        model_setting({"name": "x", "predictor": "random", "max_parallel": "two"}, "x")
    from fewshot_eval.evaluate.backends.model_checks import check_model  # predictors are a registry: checked at planning

    with pytest.raises(ConfigError, match=r"unknown predictor 'gpt'. Valid: clm, majority, openai_completions, random, vllm"):
        check_model("x", model_setting({"name": "x", "predictor": "gpt"}, "x"), {})
    with pytest.raises(ConfigError, match=r"model/x.yaml: key 'resources.nodes' must be int"):
        model_setting({"name": "x", "predictor": "random", "resources": {"nodes": "many"}}, "x")
    with pytest.raises(ConfigError, match=r"task/t.yaml key 'eval': unknown evaluation parameter 'scorng'"):
        task_setting({"run_name": "r", "tasks": ["a"], "eval": {"scorng": "sum"}}, "t")
    with pytest.raises(ConfigError, match=r"task/t.yaml: missing mandatory key 'run_name'"):
        task_setting({"tasks": ["a"]}, "t")


def test_precedence_each_layer_overrides_the_one_before() -> None:
    run = {"scoring": "run", "train_sep": "run", "calibrator": "run", "seed": "run", "dtype": "run"}
    model_eval = {"train_sep": "model", "calibrator": "model", "seed": "model", "dtype": "model"}
    task_eval = {"calibrator": "task", "seed": "task", "dtype": "task"}
    final = {"seed": "final", "dtype": "final"}
    cli = {"dtype": "cli"}
    p = effective_params(run, model_eval, task_eval, final, cli)
    assert (p["scoring"], p["train_sep"], p["calibrator"], p["seed"], p["dtype"]) == ("run", "model", "task", "final", "cli")


def test_precedence_through_the_real_config_stack(tmp_path: Path) -> None:
    """Every layer sets some of the same keys: run params < experiment base < model < task < experiment final < command line."""
    conf = tmp_path / "conf"
    for g in ("model", "task", "experiment"):
        (conf / g).mkdir(parents=True)
    (conf / "model" / "m.yaml").write_text("name: m\npredictor: random\neval: {train_sep: M, description: M, seed: 1, n_eval_samples: 5}\n")
    (conf / "task" / "t.yaml").write_text("run_name: r\ntasks: [copa_demo]\neval: {train_sep: T, seed: 2, n_eval_samples: 7}\n")
    (conf / "experiment" / "e.yaml").write_text(
        "# @package _global_\ntrain_sep: EXP_BASE\ndescription: EXP_BASE\nunconditional_prompt: EXP_BASE\n"
        "final_overrides: {train_sep: FINAL, seed: 3}\n"
    )
    base = ["model=m", "task=t", "experiment=e", f"output_dir={tmp_path}"]
    _, [job] = plan(base, config_dirs=[conf])
    p = job.unit.params
    assert p["unconditional_prompt"] == "EXP_BASE"  # experiment base beats run params
    assert p["description"] == "M"  # model beats experiment base
    assert p["n_eval_samples"] == 7  # task beats model
    assert p["seed"] == 3 and p["train_sep"] == "FINAL"  # experiment final beats task and model
    assert p["dtype"] == "float32"  # a run param nobody touched
    _, [job] = plan(base + ["train_sep=CLI", "seed=9"], config_dirs=[conf])
    assert job.unit.params["train_sep"] == "CLI" and job.unit.params["seed"] == 9  # command line beats all

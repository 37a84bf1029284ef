"""``extra_metrics``: registered metrics added to a task's own list by an eval param, checked at planning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.api import plan


def _one(overrides: list[str], out: Path):  # noqa: ANN202
    _, jobs = plan([*overrides, f"output_dir={out}"])
    assert len(jobs) == 1
    return jobs[0]


def test_unknown_metric_and_wrong_kind_are_planning_errors(tmp_path: Path) -> None:
    job = _one(["model=random", "task=copa_demo", "extra_metrics={copa_demo: [no_such_metric]}"], tmp_path)
    assert job.status == "error"
    assert "extra_metrics.copa_demo: unknown metric 'no_such_metric'. Valid: " in job.detail and "gold_perplexity" in job.detail
    job = _one(["model=random", "task=copa_demo", "extra_metrics=[bleu]"], tmp_path)  # a list: every task of the setting
    assert job.status == "error"
    assert "metric 'bleu' scores generated text, but task 'copa_demo' is kind: choice" in job.detail and "accuracy" in job.detail
    job = _one(["model=random", "task=qa_demo", "extra_metrics={qa_demo: accuracy}"], tmp_path)
    assert job.status == "error" and "metric 'accuracy' scores chosen labels, but task 'qa_demo' is kind: generate" in job.detail
    # another task's entry does not apply to copa_demo
    assert _one(["model=random", "task=copa_demo", "extra_metrics={qa_demo: [bleu]}"], tmp_path).status == "run"


def test_extra_metrics_enter_the_identity_only_when_set(tmp_path: Path) -> None:
    plain = _one(["model=random", "task=copa_demo"], tmp_path)
    neutral = _one(["model=random", "task=copa_demo", "extra_metrics=null"], tmp_path)
    extra = _one(["model=random", "task=copa_demo", "extra_metrics={copa_demo: [gold_perplexity]}"], tmp_path)
    assert plain.unit.result_dir == neutral.unit.result_dir
    assert extra.unit.result_dir != plain.unit.result_dir and "extra_metrics" in extra.unit.identity["params"]


def _metrics(out: Path) -> dict:
    (result,) = out.rglob("results.json")
    (trial,) = result.parent.rglob("metrics.json")
    return json.loads(trial.read_text())["metrics"]["copa_demo.default"]


@pytest.mark.slow
def test_tiny_gpt2_reports_gold_perplexity_through_extra_metrics(workdir: Path) -> None:
    """The extra metric is reported next to the task's own; the other numbers are those of a run without it."""
    args = ["model=tiny_gpt2", "task=copa_demo", "nshot=0", "n_eval_samples=8", "device=cpu"]
    run_cli([*args, "output_dir=plain"], workdir)
    run_cli([*args, "output_dir=extra", "extra_metrics={copa_demo: [gold_perplexity]}"], workdir)
    plain, extra = _metrics(workdir / "plain"), _metrics(workdir / "extra")
    assert "gold_perplexity" not in plain and extra.pop("gold_perplexity") > 1.0
    assert extra == plain


def test_catalog_tasks_take_no_extra_metrics() -> None:
    from fewshot_eval.config import ConfigError
    from fewshot_eval.evaluate.tasks.task_checks import check_tasks

    with pytest.raises(ConfigError, match=r"extra_metrics: task 'lm_eval:hellaswag' is an lm-eval catalog task"):
        check_tasks(["lm_eval:hellaswag"], {"extra_metrics": ["accuracy"]}, [])

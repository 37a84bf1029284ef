"""Predictors and metrics are registries: a user config dir's plugins/ module adds its own, used by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.config import ConfigError, conf_dir
from fewshot_eval.evaluate.registry import metric, metric_names, predictor_class, predictor_names

PLUGIN = '''
from fewshot_eval.evaluate.backends.predictor import Loglik, Predictor
from fewshot_eval.evaluate.registry import register_metric, register_predictor


@register_metric("gold_rate")
def gold_rate(gold, pred):
    """Share of examples whose gold label is the first label (a toy metric)."""
    return 100.0 * sum(g == "0" for g in gold) / max(len(gold), 1)


@register_predictor("always_last")
class AlwaysLast(Predictor):
    """Scores each candidate by its label: the highest label always wins."""

    def loglikelihood(self, requests):
        return [Loglik([float(r.label)]) for r in requests]
'''


def test_builtins_are_registered_and_unknown_names_list_them() -> None:
    assert {"clm", "random", "majority"} <= set(predictor_names())
    assert {"accuracy", "macro_f1"} <= set(metric_names())
    assert predictor_class("clm").is_lm and not predictor_class("random").is_lm
    assert "loglikelihood" in predictor_class("majority").operations
    with pytest.raises(ConfigError, match=r"unknown metric 'bleurt'. Valid: .*accuracy.*macro_f1"):
        metric("bleurt")


def test_a_user_metric_and_predictor_from_a_config_dir(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "c"
    for d in ("plugins", "model", "task", "task_def"):
        (conf / d).mkdir(parents=True)
    (conf / "plugins" / "mine.py").write_text(PLUGIN)
    (conf / "model" / "last.yaml").write_text("name: last\npredictor: always_last\n")
    src = conf_dir() / "task_def"
    text = (src / "copa_demo.yaml").read_text().replace("data/copa_demo/", f"{src}/data/copa_demo/")
    text += "metrics: [accuracy, gold_rate]\n"
    (conf / "task_def" / "copa_mine.yaml").write_text(text)
    (conf / "task" / "copa_mine.yaml").write_text("run_name: mine\ntasks: [copa_mine]\n")
    out = run_cli(["-m", "--config-dir", str(conf), "model=last", "task=copa_mine", "nshot=0"], workdir).stdout
    assert "ran 1" in out
    [res] = (workdir / "results").rglob("results.json")
    sub = json.loads(res.read_text())["results"]["copa_mine.default"]
    [pred] = res.parent.glob("trial0/*.predictions.jsonl")
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    assert all(r["pred"] == "1" for r in rows)  # the user's predictor ran
    assert sub["gold_rate"]["mean"] == pytest.approx(100.0 * sum(r["gold"] == "0" for r in rows) / len(rows))
    assert "macro_f1" not in sub  # the task definition chose its metrics
    bad = conf / "task_def" / "copa_bad.yaml"
    bad.write_text(text.replace("metrics: [accuracy, gold_rate]", "metrics: [accuracy, bleurt]"))
    shutil.copy(conf / "task" / "copa_mine.yaml", conf / "task" / "copa_bad.yaml")
    (conf / "task" / "copa_bad.yaml").write_text("run_name: mine\ntasks: [copa_bad]\n")
    dry = run_cli(["-m", "--config-dir", str(conf), "model=last", "task=copa_bad", "nshot=0", "dry_run=true"], workdir, check=False)
    assert dry.returncode == 2 and "unknown metric 'bleurt'" in dry.stderr

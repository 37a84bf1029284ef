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


CAPABLE = '''
from fewshot_eval.evaluate.backends.hf_base import HFPredictor
from fewshot_eval.evaluate.backends.predictor import Loglik, Predictor
from fewshot_eval.evaluate.registry import register_predictor


@register_predictor("label_counter")
class LabelCounter(Predictor):
    """Answers from the train split's labels, as majority does."""

    uses_gpus = False
    needs_train_labels = True

    def loglikelihood(self, requests):
        return [Loglik([0.0]) for _ in requests]


@register_predictor("my_hf")
class MyHF(HFPredictor):
    """A HuggingFace checkpoint behind a loop of its own."""

    def loglikelihood(self, requests):
        raise NotImplementedError
'''


@pytest.fixture
def own_registry(monkeypatch):
    """The registry as it is, restored after the test (plugins it loads are forgotten)."""
    from fewshot_eval.evaluate import registry

    monkeypatch.setattr(registry, "_PREDICTORS", dict(registry._PREDICTORS))
    monkeypatch.setattr(registry, "_loaded", set(registry._loaded))
    return registry


def test_capabilities_not_names_decide_what_applies_to_a_predictor(own_registry, tmp_path: Path) -> None:
    """A plugin's class attributes get it the built-ins' treatment: refused where train labels say
    nothing (like majority), HuggingFace checks and a weights fingerprint (like clm and vllm)."""
    from fewshot_eval.api import plan
    from fewshot_eval.evaluate.backends.model_checks import check_model
    from fewshot_eval.evaluate.tasks.task_checks import check_catalog_task, check_tasks

    conf = tmp_path / "c"
    for d in ("plugins", "model"):
        (conf / d).mkdir(parents=True)
    (conf / "plugins" / "capable.py").write_text(CAPABLE)
    own_registry.load_plugins([conf])
    with pytest.raises(ConfigError, match=r"predictor 'label_counter': task 'blimp_demo' is a minimal-pairs task"):
        check_tasks(["blimp_demo"], {"seed": 0, "predictor": "label_counter"}, [conf, conf_dir()])
    with pytest.raises(ConfigError, match=r"task 'lm_eval:hellaswag': predictor 'label_counter' needs a task's train labels"):
        check_catalog_task("lm_eval:hellaswag", {"predictor": "label_counter"}, [conf, conf_dir()])

    mine = {"name": "mine", "predictor": "my_hf", "weights": str(tmp_path / "nowhere")}
    with pytest.raises(ConfigError, match=r"model 'mine': weights .*nowhere does not exist"):
        check_model("mine", mine, {"predictor": "my_hf"})
    with pytest.raises(ConfigError, match=r"model 'mine': predictor 'my_hf' needs 'weights'"):
        check_model("mine", {**mine, "weights": None}, {"predictor": "my_hf"})
    check_model("mine", {**mine, "weights": "tiny-gpt2", "hf_overrides": {"n_layer": 1}}, {"predictor": "my_hf"})
    with pytest.raises(ConfigError, match=r"hf_overrides applies to predictors clm, my_hf and vllm .*not 'label_counter'"):
        check_model("mine", {"name": "mine", "hf_overrides": {"n_layer": 1}}, {"predictor": "label_counter"})

    (conf / "model" / "mine.yaml").write_text("name: mine\npredictor: my_hf\nweights: tiny-gpt2\n")
    (conf / "model" / "counter.yaml").write_text("name: counter\npredictor: label_counter\nweights: tiny-gpt2\n")
    _, jobs = plan(["model=mine,counter", "task=copa_demo", "nshot=0", f"output_dir={tmp_path}"], config_dirs=[conf])
    weights = {j.unit.model_key: j.unit.weights for j in jobs}
    assert weights["mine"] and weights["counter"] is None  # only a predictor that loads the weights fingerprints them


def test_a_plugin_importing_a_moved_module_is_told_where_it_went(own_registry, tmp_path: Path) -> None:
    conf = tmp_path / "c"
    (conf / "plugins").mkdir(parents=True)
    (conf / "plugins" / "old.py").write_text("from fewshot_eval.evaluate.clm import CausalLMPredictor\n")
    moved = (r"old.py: the plugin module failed to load: ModuleNotFoundError: .* \(module fewshot_eval.evaluate.clm moved in "
             r"fewshot-eval 0.3: import from fewshot_eval.evaluate.backends.clm \(CausalLMPredictor")
    with pytest.raises(ConfigError, match=moved):
        own_registry.load_plugins([conf])
    with pytest.raises(ConfigError, match=moved):  # not taken as loaded: the next lookup says why again
        own_registry.predictor_class("clm", [conf])

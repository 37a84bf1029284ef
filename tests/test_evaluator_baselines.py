"""FewShotEvaluator with the baseline predictors: interface, keys, seeding, majority from TRAIN."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate import TrialResult, build_evaluator
from fewshot_eval.evaluate.tasks.definitions import load_task_def
from fewshot_eval.evaluate.tasks.task_data import load_split

PARAMS = {"seed": 0, "scoring": "sum", "train_sep": "\n\n", "n_eval_samples": 0, "templates": {}, "languages": {}, "train_languages": {}}


def run(predictor, tasks, nshot=2, trial=0, **over):
    params = {**PARAMS, "predictor": predictor, **over}
    return build_evaluator({"name": predictor, "predictor": predictor}, params).run_trial(tasks, params, nshot, trial)


def test_keys_rows_and_metrics():
    res = run("random", ["copa_demo", "nli_demo", "pawsx_demo"], templates={"nli_demo": ["default", "gpt3"]}, languages={"pawsx_demo": ["de"]})
    assert isinstance(res, TrialResult)
    assert set(res.metrics) == {"copa_demo.default", "nli_demo.default", "nli_demo.gpt3", "pawsx_demo.default.de"}
    m = res.metrics["nli_demo.gpt3"]
    assert m["n_examples"] == 30 and 0 <= m["accuracy"] <= 100 and 0 <= m["macro_f1"] <= 100
    rows = res.predictions["nli_demo.gpt3"]
    assert m["accuracy"] == pytest.approx(100 * sum(r["correct"] for r in rows) / len(rows))
    row = rows[0]
    assert row["n_demos"] == 2 and row["prompt"].count("\n\n") == 2 and row["prompt"].endswith("Answer:")
    assert [c["label"] for c in row["candidates"]] == ["entailment", "neutral", "contradiction"]
    assert row["candidates"][0]["text"] == " True"
    json.dumps(res.predictions), json.dumps(res.metrics), json.dumps(res.info)  # serialisable
    assert res.info["preferred_metric"]["nli_demo.gpt3"] == "macro_f1"


def test_random_is_seeded_by_seed_plus_trial():
    a = run("random", ["story_demo"], trial=1)
    b = run("random", ["story_demo"], trial=1)
    c = run("random", ["story_demo"], trial=0, seed=1)  # seed + trial is what counts
    d = run("random", ["story_demo"], trial=2)

    def preds(r):
        return [x["pred"] for x in r.predictions["story_demo.default"]]

    assert preds(a) == preds(b) == preds(c) != preds(d)
    assert len(set(preds(a))) == 4  # all four candidates get picked


def test_majority_uses_train_split_not_eval():
    task = load_task_def("nli_demo")
    train = Counter(d["_label"] for d in load_split(task, "train"))
    evals = Counter(d["_label"] for d in load_split(task, "validation"))
    train_major = max(task.labels, key=lambda lab: (train[lab], -task.labels.index(lab)))
    assert train_major != evals.most_common(1)[0][0]  # the data makes the leak visible
    res = run("majority", ["nli_demo"])
    assert {r["pred"] for r in res.predictions["nli_demo.default"]} == {train_major}
    assert res.metrics["nli_demo.default"]["accuracy"] == pytest.approx(100 * evals[train_major] / 30)


def test_n_eval_samples_eval_set_and_cross_lingual():
    res = run("majority", ["pawsx_demo"], n_eval_samples=5, eval_set="train", train_languages={"pawsx_demo": "de"}, languages={"pawsx_demo": "en"})
    rows = res.predictions["pawsx_demo.default.en"]
    assert len(rows) == 5 and res.metrics["pawsx_demo.default.en"]["n_examples"] == 5
    demos = res.info["demonstrations"]["pawsx_demo.default.en"]
    assert demos["train_language"] == "de"
    demo_text = rows[0]["prompt"].split("\n\n")[0]
    assert any(w in demo_text for w in ("Der ", "Die ", "Das ")), demo_text  # German demonstrations, English test
    # train_set == eval_set in the same language: evaluated rows are never demonstrations
    res = run("majority", ["copa_demo"], n_eval_samples=5, eval_set="train", nshot=-1)
    info = res.info["demonstrations"]["copa_demo.default"]
    evaluated = {r["id"] for r in res.predictions["copa_demo.default"]}
    assert info["pool_size"] == 37 and not evaluated & set(info["ids"])


def test_errors():
    with pytest.raises(ConfigError, match="unknown mode 'avg'"):
        run("random", ["copa_demo"], scoring="avg")
    with pytest.raises(ConfigError, match="unknown calibrator"):
        run("random", ["copa_demo"], calibrator="contextual")
    # baselines ignore calibration (no options needed) and say so
    res = run("random", ["copa_demo"], calibrator="average_option")
    assert "calibrator=average_option ignored" in res.info["warnings"][0] and "accuracy_raw" not in res.metrics["copa_demo.default"]
    with pytest.raises(ConfigError, match=r"Unknown task_def 'copa_nope' \(did you mean 'copa_demo'\?\)\. Available: .*copa_demo"):
        run("random", ["copa_nope"])
    with pytest.raises(ConfigError, match="unknown predictor 'gpt3'"):
        build_evaluator({"predictor": "gpt3"}, {"predictor": "gpt3"})

"""Task shapes: per-example candidates, several answers, grouped sub-problems, minimal pairs.

Each bundled demo task runs end to end with the tiny GPT-2 and the baselines; log-likelihoods
are checked against lm-evaluation-harness's HFLM, metrics against independent computations.
"""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path

import pytest
import yaml

from fewshot_eval.config import ConfigError, conf_dir, config_dirs
from fewshot_eval.evaluate import build_evaluator
from fewshot_eval.evaluate.rescoring import recalc_metrics

MODEL = {"name": "tiny_gpt2", "predictor": "clm", "weights": "tiny-gpt2"}
SHAPED = ["hellaswag_demo", "record_demo", "multirc_demo", "blimp_demo"]


def _params(**kw):
    return {"seed": 0, "predictor": "clm", "device": "cpu", "dtype": "float32", "batch_size": 8, "max_length": 256, **kw}


@pytest.fixture(scope="module")
def lm_runs():
    ev = build_evaluator(MODEL, _params())
    out = {}
    for task in SHAPED:
        for nshot in (0, 2) if task != "blimp_demo" else (0,):
            out[task, nshot] = ev.run_trial([task], _params(), nshot, 0)
    return out


def _rows(res):
    [rows] = res.predictions.values()
    return rows


def _metrics(res):
    [m] = res.metrics.values()
    return m


@pytest.mark.slow
def test_demo_tasks_run_with_tiny_gpt2(lm_runs):
    for (task, _nshot), res in lm_runs.items():
        json.dumps([res.metrics, res.predictions, res.info])
        m = _metrics(res)
        assert m["n_examples"] == len(_rows(res)) > 0
        from fewshot_eval.evaluate.tasks.definitions import load_task_def

        td = load_task_def(task)
        assert set(td.metrics) <= set(m)
        # recalc from the stored rows reproduces the run exactly (same params)
        assert recalc_metrics(_rows(res), _params(), task, list(td.metrics)) == m
    # per-example candidates: as many candidates as the example's endings, labelled by index
    data = [json.loads(x) for x in (Path(conf_dir()) / "task_def/data/hellaswag_demo/validation.jsonl").read_text().splitlines()]
    rows = _rows(lm_runs["hellaswag_demo", 2])
    assert [len(r["candidates"]) for r in rows] == [len(d["endings"]) for d in data]
    assert [c["text"] for c in rows[0]["candidates"]] == [" " + e for e in data[0]["endings"]]
    assert all(r["gold"] == str(d["label"]) for r, d in zip(rows, data))
    assert rows[0]["n_demos"] == 2 and rows[0]["prompt"].count("\n\n") == 2


@pytest.mark.parametrize("name", ["random", "majority"])
def test_demo_tasks_run_with_baselines(name):
    params = _params(predictor=name)
    ev = build_evaluator({"name": name}, params)
    for task in SHAPED:
        if task == "blimp_demo" and name == "majority":
            continue  # a planning error, see below
        res = ev.run_trial([task], params, 0 if task == "blimp_demo" else 2, 0)
        assert _metrics(res)["n_examples"] == len(_rows(res)) > 0


@pytest.mark.slow
def test_minimal_pairs_equal_lm_eval_blimp(lm_runs):
    """Each sentence scored whole from an empty context, as lm-eval's BLiMP (loglikelihood("", sentence))."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    rows = _rows(lm_runs["blimp_demo", 0])
    hflm = HFLM(pretrained=str(tiny_gpt2_path()), batch_size=8, device="cpu")
    sents = [(c["label"], c["text"]) for r in rows for c in r["candidates"]]
    ref = hflm.loglikelihood([Instance("loglikelihood", {}, ("", s), i) for i, (_, s) in enumerate(sents)], disable_tqdm=True)
    got = [sum(c["logprobs"]) for r in rows for c in r["candidates"]]
    assert got == pytest.approx([b for b, _ in ref], rel=1e-6, abs=1e-5)  # float32 sums, as in test_prefix_tree.py
    assert all(r["prompt"] == "" and [c["label"] for c in r["candidates"]] == ["good", "bad"] for r in rows)
    correct = [ref[2 * i][0] > ref[2 * i + 1][0] for i in range(len(rows))]
    assert [r["correct"] for r in rows] == correct
    assert _metrics(lm_runs["blimp_demo", 0])["accuracy"] == pytest.approx(100.0 * sum(correct) / len(correct))


@pytest.mark.slow
def test_several_answers_any_and_all_f1(lm_runs):
    for nshot in (0, 2):
        res = lm_runs["record_demo", nshot]
        rows, m = _rows(res), _metrics(res)
        assert all(isinstance(r["gold"], list) for r in rows) and any(len(r["gold"]) > 1 for r in rows)
        assert all(r["correct"] == (r["pred"] in r["gold"]) for r in rows)
        assert m["accuracy"] == pytest.approx(100.0 * sum(r["pred"] in r["gold"] for r in rows) / len(rows))
        f1s = []
        for r in rows:
            ranked = sorted(r["candidates"], key=lambda c: -c["score"])
            top = {c["label"] for c in ranked[: len(r["gold"])]}
            hit = len(top & set(r["gold"]))
            f1s.append(0.0 if not hit else 2 * (hit / len(top)) * (hit / len(r["gold"])) / (hit / len(top) + hit / len(r["gold"])))
        assert m["all_f1"] == pytest.approx(100.0 * sum(f1s) / len(f1s))


@pytest.mark.slow
def test_grouped_exact_match_and_f1a(lm_runs):
    from sklearn.metrics import f1_score

    for nshot in (0, 2):
        res = lm_runs["multirc_demo", nshot]
        rows, m = _rows(res), _metrics(res)
        assert {r["positive"] for r in rows} == {"1"}
        assert m["f1a"] == pytest.approx(100.0 * f1_score([r["gold"] for r in rows], [r["pred"] for r in rows], pos_label="1"))
        groups = [all(r["pred"] == r["gold"] for r in g) for _, g in groupby(rows, key=lambda r: r["group"])]
        assert len(groups) == 4 and m["group_exact_match"] == pytest.approx(100.0 * sum(groups) / len(groups))


@pytest.mark.slow
def test_scoring_modes_calibration_and_recalc_on_shapes(lm_runs):
    """A calibrated run with another scoring mode; recalc from its rows gives the plain run's
    metrics and its own (calibrated) metrics back."""
    params = _params(scoring="mean", calibrator="average_option", calibration_options={"hellaswag_demo": ["ctx::"], "record_demo": ["passage::"]})
    ev = build_evaluator(MODEL, params)
    for task in ("hellaswag_demo", "record_demo"):
        res = ev.run_trial([task], params, 2, 0)
        m, rows = _metrics(res), _rows(res)
        assert "accuracy_raw" in m and all(len(r["calibration"][0]["candidates"]) == len(r["candidates"]) for r in rows)
        names = [k for k in m if k != "n_examples" and not k.endswith("_raw")]
        assert recalc_metrics(rows, params, task, names) == m
        plain = _metrics(lm_runs[task, 2])
        assert recalc_metrics(rows, _params(), task, names) == pytest.approx(plain)


def _task_def(name: str, **patch):
    from fewshot_eval.evaluate.tasks.definitions import parse_task_def

    path = Path(conf_dir()) / "task_def" / f"{name}.yaml"
    node = {**yaml.safe_load(path.read_text()), **patch}
    for k in [k for k, v in patch.items() if v is None]:
        node.pop(k)
    return parse_task_def(name, path, node)


@pytest.mark.parametrize("name, patch, message", [
    ("hellaswag_demo", {"labels": [0, 1]}, "key 'labels': a task with choices_field takes its candidates from the data"),
    ("hellaswag_demo", {"templates": {"d": {"prompt": "{{ ctx }} {{ candidate }}", "candidates": {0: "a"}}}},
     "key 'templates.d' key 'candidates': with choices_field, one Jinja2 string"),
    ("hellaswag_demo", {"shape": 1}, "unknown key 'shape'"),
    ("multirc_demo", {"positive_label": None}, "key 'group_field' needs 'positive_label'"),
    ("multirc_demo", {"positive_label": 2}, "key 'positive_label': '2' is not one of the labels"),
    ("multirc_demo", {"multiple_answers": "yes"}, "key 'multiple_answers': expected true or false"),
    ("blimp_demo", {"templates": {}}, "key 'templates': does not apply to a task of kind 'minimal_pairs'"),
    ("blimp_demo", {"pair_fields": {"good": "sentence_good"}}, "key 'pair_fields': expected {good: <field>, bad: <field>}"),
    ("record_demo", {"label_field": None}, "missing required key 'label_field'"),
])
def test_shape_key_errors_name_file_and_key(name, patch, message):
    with pytest.raises(ConfigError, match=r"task_def/" + name + r"\.yaml .*"
                       + message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(").replace(")", r"\)").replace("'", "'")):
        _task_def(name, **patch)


def test_bad_rows_name_file_and_line(tmp_path):
    from fewshot_eval.evaluate.tasks.task_data import load_split

    td = _task_def("hellaswag_demo")
    rows = [{"ind": 0, "ctx": "A", "endings": ["x", "y"], "label": 0}, {"ind": 1, "ctx": "B", "endings": ["x", "y"], "label": 2}]
    (tmp_path / "v.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    td.path = tmp_path / "hellaswag_demo.yaml"
    td.source.splits = {"train": "v.jsonl", "validation": "v.jsonl"}
    with pytest.raises(ConfigError, match=r"v\.jsonl:2: .*gold 2 is not an index into the 2 choices"):
        load_split(td, "validation")


def test_majority_on_minimal_pairs_is_a_planning_error():
    from fewshot_eval.evaluate.tasks.task_checks import check_tasks

    check_tasks(["blimp_demo"], _params(predictor="random"), config_dirs())
    with pytest.raises(ConfigError, match="predictor 'majority'.*minimal-pairs.*Use predictor 'random'"):
        check_tasks(["blimp_demo"], _params(predictor="majority"), config_dirs())


def test_planning_errors_for_options_that_do_not_apply():
    from fewshot_eval.evaluate.tasks.task_checks import check_balanced, check_tasks

    with pytest.raises(ConfigError, match="balanced=true for task 'hellaswag_demo': it has no fixed label set.*use balanced=false"):
        check_balanced(["hellaswag_demo"], _params(balanced=True), 2, config_dirs())
    check_balanced(["multirc_demo"], _params(balanced=True), 2, config_dirs())
    with pytest.raises(ConfigError, match="calibrator=average_option: task 'blimp_demo' is a minimal-pairs task"):
        check_tasks(["blimp_demo"], _params(calibrator="average_option", calibration_options={"blimp_demo": ["sentence_good::"]}), config_dirs())
    with pytest.raises(ConfigError, match="calibration_options.hellaswag_demo: option 'endings::' blanks 'endings'"):
        check_tasks(["hellaswag_demo"], _params(calibrator="average_option", calibration_options={"hellaswag_demo": ["endings::"]}), config_dirs())

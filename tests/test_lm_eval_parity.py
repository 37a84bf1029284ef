"""Options for comparing with lm-evaluation-harness: per-example demonstrations drawn as its
sampler draws them; template fields needed only in the splits a job reads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.evaluator import FewShotEvaluator
from fewshot_eval.evaluate.tasks.definitions import load_task_def
from fewshot_eval.evaluate.tasks.selection import split_data
from fewshot_eval.evaluate.tasks.task_checks import check_nshot, check_tasks
from fewshot_eval.plan.identity import job_identity

COPA = Path(__file__).resolve().parents[1] / "conf" / "task_def" / "data" / "copa_demo"
PARAMS = {"seed": 7, "scoring": "sum", "predictor": "random", "n_eval_samples": 12, "train_sep": "\n\n"}


def lm_eval_demo_ids(seed: int, nshot: int, limit: int) -> list[list[str]]:
    """The train rows lm-eval's ContextSampler gives each of the first ``limit`` validation docs of copa_demo."""
    from lm_eval.api.task import ConfigurableTask

    task = ConfigurableTask(config={
        "task": "copa_ref", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"train": str(COPA / "train.jsonl"), "validation": str(COPA / "validation.jsonl")}},
        "training_split": "train", "validation_split": "validation", "fewshot_split": "train",
        "output_type": "multiple_choice", "doc_to_text": "doc {{idx}}", "doc_to_target": "{{label}}", "doc_to_choice": ["0", "1"],
        "target_delimiter": " ", "fewshot_delimiter": "\n\n", "num_fewshot": nshot,
    })
    task.set_fewshot_seed(seed)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    contexts = {inst.doc_id: inst.args[0] for inst in task.instances}
    # "doc 20 0\n\ndoc 9 0\n\ndoc 42": each demonstration is "doc <idx> <label>", then the evaluated doc
    return [[part.split()[1] for part in contexts[i].split("\n\n")[:-1]] for i in sorted(contexts)]


@pytest.mark.parametrize("trial", [0, 1])
def test_per_example_demonstrations_are_lm_evals(trial: int) -> None:
    params = {**PARAMS, "demo_sampling": "per_example"}
    result = FewShotEvaluator({"name": "random"}, params).run_trial(["copa_demo"], params, 3, trial)
    rows = result.predictions["copa_demo.default"]
    ours = [row["demo_ids"] for row in rows]
    assert ours == lm_eval_demo_ids(seed=7 + trial, nshot=3, limit=12)
    assert len({tuple(x) for x in ours}) > 1  # they differ between examples
    assert result.info["demonstrations"]["copa_demo.default"]["sampled"] == 3
    # the prompt holds exactly that example's demonstrations
    train = {d["_id"]: d for d in split_data(load_task_def("copa_demo"), params, None, None)[1]}
    tmpl = load_task_def("copa_demo").templates["default"]
    for row in rows:
        demos = [tmpl.fill(train[i], train[i]["_label"], None) for i in row["demo_ids"]]
        assert row["prompt"].startswith("\n\n".join(demos) + "\n\n")


def test_per_trial_stays_the_default_and_the_identity_of_old_results() -> None:
    per_trial = FewShotEvaluator({"name": "random"}, PARAMS).run_trial(["copa_demo"], PARAMS, 3, 0)
    rows = per_trial.predictions["copa_demo.default"]
    assert "demo_ids" not in rows[0] and len({r["prompt"].rsplit("\n\n", 1)[0] for r in rows}) == 1  # one set shared
    model = {"name": "random", "predictor": "random", "weights": None, "revision": None}
    base = job_identity(model, ["copa_demo"], PARAMS, 3)
    assert job_identity(model, ["copa_demo"], {**PARAMS, "demo_sampling": "per_trial"}, 3) == base
    assert job_identity(model, ["copa_demo"], {**PARAMS, "demo_sampling": "per_example"}, 3)["params"]["demo_sampling"] == "per_example"


def test_bad_demo_sampling_is_a_planning_error() -> None:
    with pytest.raises(ConfigError, match=r"demo_sampling: unknown value 'per_doc'. Valid: per_trial .*per_example"):
        check_tasks(["copa_demo"], {**PARAMS, "demo_sampling": "per_doc"}, [])
    with pytest.raises(ConfigError, match="cannot be combined with balanced=true"):
        check_tasks(["copa_demo"], {**PARAMS, "demo_sampling": "per_example", "balanced": True}, [])


def test_template_fields_need_to_exist_only_in_the_splits_a_job_reads(tmp_path: Path) -> None:
    node = {
        "data": {"local": {"train": "d/train.jsonl", "validation": "d/val.jsonl"}},
        "train_split": "train", "eval_split": "validation", "label_field": "label", "labels": ["a", "b"],
        "default_template": "plain",
        "templates": {
            "plain": {"prompt": "{{ text }} {{ hint }} -> {{ candidate }}", "candidates": {"a": "A", "b": "B"}},
            "other": {"prompt": "{{ nowhere }} -> {{ candidate }}", "candidates": {"a": "A", "b": "B"}},  # never selected
        },
    }
    (tmp_path / "task_def" / "d").mkdir(parents=True)
    (tmp_path / "task_def" / "t.yaml").write_text(yaml.safe_dump(node))
    rows = [{"text": f"t{i}", "hint": "h", "label": "ab"[i % 2]} for i in range(6)]
    (tmp_path / "task_def" / "d" / "val.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "task_def" / "d" / "train.jsonl").write_text("\n".join(json.dumps({"text": r["text"], "label": r["label"]}) for r in rows))
    search = [tmp_path]
    task = load_task_def("t", search)
    params: dict = {}
    eval_docs, pool = split_data(task, params, None, None, demonstrations=False)  # 0-shot: train is not read for text
    assert len(eval_docs) == 6 and len(pool) == 6
    check_tasks(["t"], params, search)
    check_nshot(["t"], params, 0, search)
    with pytest.raises(ConfigError, match=r"split 'train' row 0 .*template 'plain': field 'hint' is not in the data"):
        check_nshot(["t"], params, 2, search)  # with demonstrations it is
    with pytest.raises(ConfigError, match=r"template 'other': field 'nowhere'"):
        split_data(task, {"templates": "other"}, None, None, demonstrations=False)  # selected: checked


# -- lm-eval's k / k+1 rule (demo_sampling=per_example_lm_eval), on data generated here -----------------

FRESH_CASES = {  # name: (our written keys, our params, lm-eval's split keys, data splits, k+1 drawn?)
    "both_unset": ({}, {}, {"training_split": "train", "validation_split": "validation"}, ("train", "validation"), True),
    "eval_set_given": ({}, {"eval_set": "validation"}, {"training_split": "train", "validation_split": "validation",
                                                         "test_split": "validation"}, ("train", "validation"), False),
    "fewshot_vs_test": ({"train_split": "train", "eval_split": "validation"}, {},
                        {"training_split": "train", "validation_split": "validation", "fewshot_split": "train",
                         "test_split": "validation"}, ("train", "validation"), False),
    "test_split_only": ({"eval_split": "test"}, {}, {"training_split": "train", "test_split": "test"}, ("train", "test"), False),
    "same_split": ({"train_split": "validation", "eval_split": "validation"}, {},
                   {"validation_split": "validation", "fewshot_split": "validation", "test_split": "validation"}, ("validation",), True),
    "no_train_split": ({}, {}, {"validation_split": "validation"}, ("validation",), True),
}


def _fresh_rows(split: str, n: int, rng: random.Random, start: int) -> list[dict]:
    words = ["stone", "river", "cloud", "metal", "seed", "glass", "wind", "sand", "light", "heat"]
    rows = [{"idx": start + i, "premise": f"The {rng.choice(words)} met the {rng.choice(words)}.", "question": rng.choice(["cause", "effect"]),
             "choice1": f"A {rng.choice(words)}.", "choice2": f"A {rng.choice(words)}.", "label": rng.randint(0, 1)} for i in range(n)]
    if split == "validation":  # duplicates of evaluated rows: lm-eval drops every copy it drew (and may draw again)
        rows += [dict(rows[1]), dict(rows[1]), dict(rows[4])]
    return rows


def _lm_eval_fresh_demos(data: dict[str, Path], splits: dict, nshot: int, seed: int, limit: int) -> list[list[int]]:
    from lm_eval.api.task import ConfigurableTask

    task = ConfigurableTask(config={
        "task": "fresh_ref", "dataset_path": "json", "dataset_kwargs": {"data_files": {s: str(p) for s, p in data.items()}},
        **splits, "output_type": "multiple_choice", "doc_to_text": "doc {{idx}}", "doc_to_target": "{{label}}",
        "doc_to_choice": ["0", "1"], "target_delimiter": " ", "fewshot_delimiter": "\n\n", "num_fewshot": nshot,
    })
    task.set_fewshot_seed(seed)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    contexts = {inst.doc_id: inst.args[0] for inst in task.instances}
    return [[int(part.split()[1]) for part in contexts[i].split("\n\n")[:-1]] for i in sorted(contexts)]


@pytest.mark.parametrize("case", sorted(FRESH_CASES))
def test_per_example_lm_eval_follows_lm_evals_k_plus_one_rule(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """demo_sampling=per_example_lm_eval gives every example the demonstrations a real lm-eval ConfigurableTask
    gives it, on fresh data, for each way of configuring the splits; per_example differs where lm-eval draws k+1."""
    from fewshot_eval import config

    written, extra, lm_splits, splits, k_plus_one = FRESH_CASES[case]
    rng = random.Random(f"fresh-{case}")
    data = {}
    (tmp_path / "task_def" / "d").mkdir(parents=True)
    for j, split in enumerate(splits):
        data[split] = tmp_path / "task_def" / "d" / f"{split}.jsonl"
        data[split].write_text("".join(json.dumps(r) + "\n" for r in _fresh_rows(split, 14, rng, 100 * j)))
    node = {"data": {"local": {s: f"d/{s}.jsonl" for s in splits}}, **written, "label_field": "label", "labels": [0, 1],
            "default_template": "plain", "templates": {"plain": {"prompt": "doc {{ idx }} {{ candidate }}", "candidates": {0: "0", 1: "1"}}}}
    (tmp_path / "task_def" / "fresh.yaml").write_text(yaml.safe_dump(node))
    monkeypatch.setattr(config, "config_dirs", lambda: [tmp_path, config.conf_dir()])
    ids = {}
    task = load_task_def("fresh", [tmp_path])
    for split in splits:
        ids.update({d["_id"]: d["idx"] for d in split_data(task, {"eval_set": split, "train_set": split}, None, None)[0]})
    nshot, limit = 3, 15
    for trial in (0, 1):
        params = {**PARAMS, **extra, "n_eval_samples": limit, "demo_sampling": "per_example_lm_eval"}
        result = FewShotEvaluator({"name": "random"}, params).run_trial(["fresh"], params, nshot, trial)
        ours = [[ids[i] for i in row["demo_ids"]] for row in result.predictions["fresh.plain"]]
        theirs = _lm_eval_fresh_demos(data, lm_splits, nshot, PARAMS["seed"] + trial, limit)
        assert ours == theirs, (case, trial)
        assert result.info["demonstrations"]["fresh.plain"]["lm_eval_k_plus_one"] is k_plus_one
        old = FewShotEvaluator({"name": "random"}, {**params, "demo_sampling": "per_example"}).run_trial(["fresh"], {**params, "demo_sampling": "per_example"},
                                                                                                         nshot, trial)
        assert ([[ids[i] for i in row["demo_ids"]] for row in old.predictions["fresh.plain"]] == theirs) is (not k_plus_one)


def test_per_example_lm_eval_is_a_new_identity_and_a_checked_value() -> None:
    model = {"name": "random", "predictor": "random", "weights": None, "revision": None}
    base = job_identity(model, ["copa_demo"], {**PARAMS, "demo_sampling": "per_example"}, 3)
    new = job_identity(model, ["copa_demo"], {**PARAMS, "demo_sampling": "per_example_lm_eval"}, 3)
    assert new != base and new["params"]["demo_sampling"] == "per_example_lm_eval"
    from fewshot_eval.config import conf_dir

    check_tasks(["copa_demo"], {**PARAMS, "demo_sampling": "per_example_lm_eval"}, [conf_dir()])
    with pytest.raises(ConfigError, match="demo_sampling=per_example_lm_eval cannot be combined with balanced=true"):
        check_tasks(["copa_demo"], {**PARAMS, "demo_sampling": "per_example_lm_eval", "balanced": True}, [])

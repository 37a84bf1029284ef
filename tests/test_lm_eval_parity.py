"""Options for comparing with lm-evaluation-harness: per-example demonstrations drawn as its
sampler draws them; template fields needed only in the splits a job reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.tasks.task_checks import check_nshot, check_tasks
from fewshot_eval.evaluate.evaluator import FewShotEvaluator
from fewshot_eval.evaluate.tasks.definitions import load_task_def
from fewshot_eval.evaluate.tasks.selection import split_data
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

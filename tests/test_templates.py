"""Task definitions and templates: validation errors name the file/key/field and list choices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.tasks.definitions import load_task_def
from fewshot_eval.evaluate.tasks.selection import select_languages, select_templates, split_data, split_names
from fewshot_eval.evaluate.tasks.task_data import load_split

BASE = {
    "data": {"local": {"train": "d/train.jsonl", "validation": "d/val.jsonl"}},
    "label_field": "label",
    "labels": ["a", "b"],
    "templates": {"default": {"prompt": "{{ text }} -> {{ candidate }}", "candidates": {"a": "A", "b": "B"}}},
}


def write_task(tmp_path: Path, name: str, node: dict, rows=None) -> list[Path]:
    (tmp_path / "task_def" / "d").mkdir(parents=True, exist_ok=True)
    (tmp_path / "task_def" / f"{name}.yaml").write_text(yaml.safe_dump(node))
    rows = rows or [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(6)]
    for split in ("train", "val"):
        (tmp_path / "task_def" / "d" / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return [tmp_path]


def test_bundled_task_defs_load_and_render():
    for name in ("copa_demo", "nli_demo", "pawsx_demo", "story_demo"):
        task = load_task_def(name)
        for lang in task.languages or [None]:
            docs = load_split(task, task.eval_split, lang)
            assert len(docs) >= 30 and len(load_split(task, task.train_split, lang)) >= 30
            for tmpl in task.templates.values():
                prefix, suffix = tmpl.split(docs[0], lang)
                assert tmpl.fill(docs[0], docs[0]["_label"], lang) == prefix + tmpl.verbalise(docs[0], docs[0]["_label"], lang) + suffix
    nli = load_task_def("nli_demo")
    assert set(nli.templates) == {"default", "gpt3"} and nli.preferred_metric == "macro_f1"
    paws = load_task_def("pawsx_demo")
    doc = load_split(paws, "validation", "de")[0]
    assert paws.templates["googletranslate"].verbalise(doc, "1", "de") == "Ja"
    assert paws.templates["googletranslate"].verbalise(doc, "1", "en") == "Yes"


def test_unknown_and_missing_keys_name_file_and_key(tmp_path):
    search = write_task(tmp_path, "bad", {**BASE, "lables": ["a"]})
    with pytest.raises(ConfigError, match=r"task_def/bad.yaml.*unknown key 'lables'.*Valid keys"):
        load_task_def("bad", search)
    node = dict(BASE)
    del node["label_field"]
    search = write_task(tmp_path, "bad2", node)
    with pytest.raises(ConfigError, match=r"bad2.yaml.*missing required key 'label_field'"):
        load_task_def("bad2", search)
    search = write_task(tmp_path, "bad3", {**BASE, "templates": {"t": {"prompt": "{{ text }}", "candidates": {"a": "A", "b": "B"}}}})
    with pytest.raises(ConfigError, match=r"templates.t.*must contain \{\{ candidate \}\}"):
        load_task_def("bad3", search)
    with pytest.raises(ConfigError, match=r"Unknown task_def 'nope'. Available: .*bad"):
        load_task_def("nope", search)


def test_template_field_missing_from_data_names_task_template_field(tmp_path):
    node = {**BASE, "templates": {"qa": {"prompt": "{{ question }} {{ candidate }}", "candidates": {"a": "A", "b": "B"}}}}
    search = write_task(tmp_path, "t1", node)
    task = load_task_def("t1", search)
    with pytest.raises(ConfigError, match=r"task 't1' template 'qa': field 'question' is not in the data.*Fields: text, label"):
        split_data(task, {"templates": "qa"}, None, None)


def test_candidate_labels_must_match_and_slot_once(tmp_path):
    search = write_task(tmp_path, "t2", {**BASE, "templates": {"x": {"prompt": "{{ candidate }}", "candidates": {"a": "A"}}}})
    with pytest.raises(ConfigError, match=r"candidates.*must equal the task's labels"):
        load_task_def("t2", search)
    search = write_task(tmp_path, "t3", {**BASE, "templates": {"x": {"prompt": "{{ candidate }} {{ candidate }}", "candidates": {"a": "A", "b": "B"}}}})
    task = load_task_def("t3", search)
    with pytest.raises(ConfigError, match="exactly once"):
        task.templates["x"].split({"text": "q"})


def test_selection_errors_list_valid_choices():
    nli = load_task_def("nli_demo")
    assert select_templates(nli, {}) == ["default"]
    assert select_templates(nli, {"templates": {"nli_demo": "gpt3"}}) == ["gpt3"]
    with pytest.raises(ConfigError, match=r"unknown template 'gpt4'.*Valid: default, gpt3"):
        select_templates(nli, {"templates": {"nli_demo": ["gpt4"]}})
    paws = load_task_def("pawsx_demo")
    assert select_languages(paws, {"languages": {"pawsx_demo": "en"}, "train_languages": {"pawsx_demo": "de"}}) == (["en"], "de")
    with pytest.raises(ConfigError, match=r"unknown language 'fr'.*Valid: en, de"):
        select_languages(paws, {"languages": {"pawsx_demo": ["fr"]}})
    with pytest.raises(ConfigError, match="not multilingual"):
        select_languages(nli, {"languages": {"nli_demo": ["en"]}})
    with pytest.raises(ConfigError, match=r"eval_set: unknown split 'test'.*Valid: train, validation"):
        split_names(nli, {"eval_set": "test"})


def test_unknown_label_in_data_is_an_error(tmp_path):
    search = write_task(tmp_path, "t4", BASE, rows=[{"text": "x", "label": "c"}])
    task = load_task_def("t4", search)
    with pytest.raises(ConfigError, match=r"label 'c', not one of \['a', 'b'\]"):
        load_split(task, "train")


def test_hf_datasets_source_with_local_json(tmp_path):
    node = {**BASE, "data": {"hf": {"path": "json", "data_files": {"train": "d/train.jsonl", "validation": "d/val.jsonl"},
                                    "splits": {"train": "train", "validation": "validation"}}}}
    search = write_task(tmp_path, "hf1", node)
    task = load_task_def("hf1", search)
    docs = load_split(task, "validation")
    assert [d["text"] for d in docs] == [f"t{i}" for i in range(6)]
    assert docs[1]["_label"] == "b" and docs[1]["_id"] == "validation-1"

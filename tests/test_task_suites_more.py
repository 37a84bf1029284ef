"""ARC, BLiMP, MultiRC, WMT translation and WikiText on fixtures in each dataset's REAL hub schema
(tests/fixtures/hub, read through ``$FEWSHOT_HF_MIRROR`` as in tests/test_task_suites.py), checked
against lm-evaluation-harness's own task YAMLs and metric functions where it has them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fewshot_eval.config import ConfigError, conf_dir
from fewshot_eval.evaluate.tasks.definitions import load_task_def, parse_task_def
from fewshot_eval.evaluate.tasks.selection import split_data
from fewshot_eval.evaluate.tasks.task_data import HF_MIRROR_ENV

HUB = Path(__file__).parent / "fixtures" / "hub"
SEED_TRANSLATION = ["wmt14fren", "wmt14enfr", "wmt16deen", "wmt16ende", "wmt16roen", "wmt16enro"]


def _lm_eval_task_yaml(*parts: str) -> dict:
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(Path(lm_eval.__file__).parent / "tasks" / Path(*parts), resolve_func=False)


@pytest.fixture(autouse=True)
def mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(HF_MIRROR_ENV, str(HUB))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    return HUB


@pytest.mark.parametrize("name", ["arc_easy", "arc_challenge"])
def test_arc_prompt_choices_and_gold_equal_lm_evals(name: str) -> None:
    """lm-eval's arc YAML (its Jinja doc_to_text / doc_to_choice / doc_to_target, rendered by lm-eval)
    is the reference: same question prompt, same candidates, gold = position of answerKey in
    choices.label -- letters and digits, 3 to 5 choices."""
    from lm_eval.utils import apply_template

    ref = _lm_eval_task_yaml("arc", "arc_easy.yaml")
    td = load_task_def(name)
    src = td.source
    assert (src.path, src.name) == (ref["dataset_path"], {"arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge"}[name])
    docs, pool = split_data(td, {}, None, None)
    tmpl = td.templates["qa"]
    sizes, digit_keys = set(), 0
    for doc in docs + pool:
        prefix, suffix = tmpl.split(doc)
        assert prefix == apply_template(ref["doc_to_text"], doc) + " " and suffix == ""
        assert [tmpl.verbalise(doc, lab) for lab in td.labels_of(doc)] == doc["choices"]["text"]
        assert int(doc["_label"]) == int(apply_template(ref["doc_to_target"], doc))
        sizes.add(len(td.labels_of(doc)))
        digit_keys += doc["answerKey"].isdigit()
    assert digit_keys and (name != "arc_easy" or 5 in sizes) and (name != "arc_challenge" or 3 in sizes)


def _choice_node(**extra: object) -> dict:
    return {"data": {"local": {"validation": "v.jsonl"}}, "id_field": "id", "label_field": "answerKey",
            "choices_field": "choices.text", "templates": {"t": {"prompt": "{{ question }} {{ candidate }}"}}, **extra}


def test_choice_labels_field_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'choice_labels_field': only used with 'choices_field'"):
        parse_task_def("x", tmp_path / "x.yaml", {**_choice_node(choice_labels_field="choices.label"), "choices_field": None, "labels": ["A", "B"]})
    with pytest.raises(ConfigError, match=r"key 'choice_labels_field': expected a data field name .* got 'choices label'"):
        parse_task_def("x", tmp_path / "x.yaml", _choice_node(choice_labels_field="choices label"))
    (tmp_path / "task_def").mkdir()
    (tmp_path / "task_def" / "x.yaml").write_text(yaml.safe_dump(_choice_node(choice_labels_field="choices.label")))
    rows = ['{"id": "q1", "question": "Q?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "C"}',
            '{"id": "q2", "question": "Q?", "choices": {"text": ["a", "b"], "label": ["A"]}, "answerKey": "A"}',
            '{"id": "q3", "question": "Q?", "choices": {"txt": ["a", "b"], "label": ["A", "B"]}, "answerKey": "A"}']
    errors = [r"v.jsonl:1: task_def 'x' .* key 'label_field': gold 'C' \(field 'answerKey'\) is not one of the choice labels \['A', 'B'\]",
              r"v.jsonl:1: task_def 'x' .* key 'choice_labels_field': field 'choices.label' must hold one label per candidate \(2\)",
              r"v.jsonl:1: task_def 'x' .* key 'choices_field': field 'choices.text' missing in split 'validation'"]
    for row, error in zip(rows, errors):
        (tmp_path / "task_def" / "v.jsonl").write_text(row + "\n")
        with pytest.raises(ConfigError, match=error):
            split_data(load_task_def("x", [tmp_path]), {}, None, None)


def test_blimp_phenomena_are_the_hub_configs_lm_eval_lists() -> None:
    import lm_eval

    configs = sorted(yaml.safe_load(p.read_text())["dataset_name"] for p in (Path(lm_eval.__file__).parent / "tasks" / "blimp").glob("[!_]*.yaml"))
    td = load_task_def("blimp")
    assert len(configs) == 67 and sorted(td.languages) == configs and td.source.name == "{lang}"
    assert td.kind == "minimal_pairs" and td.eval_split == "train" and td.train_split is None
    fields = yaml.safe_load((conf_dir() / "task" / "blimp_fields.yaml").read_text())["eval"]["languages"]["blimp"]
    assert len(set(fields)) == 12 and set(fields) <= set(configs)
    docs, _ = split_data(td, {}, "anaphor_gender_agreement", None)
    assert [td.templates["default"].verbalise(docs[0], lab) for lab in td.labels] == [docs[0]["sentence_good"], docs[0]["sentence_bad"]]


def test_multirc_groups_by_paragraph_and_question() -> None:
    """Rows carry one group per (idx.paragraph, idx.question); two questions with the same question
    index in different paragraphs are distinct groups."""
    from fewshot_eval.evaluate.tasks.shapes import row_fields

    td = load_task_def("multirc")
    docs, pool = split_data(td, {}, None, None)
    for rows in (docs, pool):
        got = [row_fields(td, d)["group"] for d in rows]
        want = [f"{d['idx']['paragraph']}/{d['idx']['question']}" for d in rows]
        assert got == want and len(set(got)) == len({(d["idx"]["paragraph"], d["idx"]["question"]) for d in rows})
        assert {row_fields(td, d)["gold"] for d in rows} == {"0", "1"}


@pytest.mark.slow
def test_multirc_metrics_equal_lm_evals_acc_all_and_sklearns_f1() -> None:
    """The tiny model on MultiRC's fixture: group_exact_match equals lm-eval's ``acc_all`` (its SuperGLUE
    EM) and f1a sklearn's F1 of the positive class, both over the model's own predictions."""
    from lm_eval.api.metrics import acc_all
    from sklearn.metrics import f1_score

    from fewshot_eval.config import EVAL_KEYS
    from fewshot_eval.evaluate import build_evaluator

    base = yaml.safe_load((conf_dir() / "config.yaml").read_text())
    params = {k: base.get(k) for k in EVAL_KEYS} | {"predictor": "clm", "device": "cpu"}
    evaluator = build_evaluator({"name": "tiny", "predictor": "clm", "weights": "tiny-gpt2", "revision": None}, params)
    result = evaluator.run_trial(["multirc"], params, 1, 0)
    rows = result.predictions["multirc.default"]
    docs = {d["_id"]: d for d in split_data(load_task_def("multirc"), {}, None, None)[0]}
    items = [(r["pred"] == "1", docs[r["id"]]) for r in rows]
    metrics = result.metrics["multirc.default"]
    assert metrics["group_exact_match"] == pytest.approx(100 * acc_all(items))
    golds, preds = [int(docs[r["id"]]["label"]) for r in rows], [int(r["pred"]) for r in rows]
    assert metrics["f1a"] == pytest.approx(100 * f1_score(golds, preds, zero_division=0.0))


@pytest.mark.parametrize("setting", SEED_TRANSLATION)
def test_translation_settings_translate_the_named_direction(setting: str) -> None:
    """wmt14fren: French source in the prompt, the English side as reference; demonstrations from the
    validation split show the target language."""
    year, src, tgt = setting[3:5], setting[5:7], setting[7:9]
    task = yaml.safe_load((conf_dir() / "task" / f"{setting}.yaml").read_text())
    assert task["tasks"] == [f"wmt{year}_{src}_{tgt}"]
    td = load_task_def(task["tasks"][0])
    assert td.kind == "generate" and td.source.path == f"wmt/wmt{year}" and td.source.name == f"{src if src != 'en' else tgt}-en"
    assert {"bleu", "chrf"} <= set(td.metrics) and td.preferred_metric == "bleu"
    docs, pool = split_data(td, {}, None, None)
    assert td.eval_split == "test" and td.train_split == "validation" and pool
    for name, tmpl in td.templates.items():
        for doc in docs:
            prefix, _ = tmpl.split(doc)
            assert doc["translation"][src] in prefix and doc["translation"][tgt] not in prefix, (name, prefix)
            assert doc["_references"] == [doc["translation"][tgt]]
        assert tmpl.fill(pool[0]).endswith(pool[0]["translation"][tgt])  # a demonstration shows the target side


def test_translation_group_and_experiment_are_the_seeds() -> None:
    group = yaml.safe_load((conf_dir() / "tasks" / "translation.yaml").read_text())
    assert group["hydra"]["sweeper"]["params"]["task"].split(",") == SEED_TRANSLATION
    exp = yaml.safe_load((conf_dir() / "experiment" / "translation.yaml").read_text())
    assert exp["hydra"]["sweeper"]["params"]["task"].split(",") == SEED_TRANSLATION


def test_wikitext_documents_are_whole_pages() -> None:
    ref = _lm_eval_task_yaml("wikitext", "wikitext.yaml")
    td = load_task_def("wikitext")
    assert (td.source.path, td.source.name) == (ref["dataset_path"], ref["dataset_name"]) and td.kind == "perplexity"
    docs, _ = split_data(td, {}, None, None)
    assert [td.templates["page"].render(d) for d in docs] == [d["page"] for d in docs] and len(docs) == 2


def test_exams_gold_letter_and_cross_lingual_demonstrations() -> None:
    """EXAMS' nested question record: candidates from question.choices.text, gold = position of answerKey
    in question.choices.label (3 to 5 choices); demonstrations from another language's train split."""
    td = load_task_def("exams")
    sizes = set()
    for lang in ("bg", "it"):
        docs, pool = split_data(td, {}, lang, None)
        for doc in docs + pool:
            choices = doc["question"]["choices"]
            assert td.templates["qa"].verbalise(doc, doc["_label"], lang) == choices["text"][choices["label"].index(doc["answerKey"])]
            assert doc["info"]["language"] == {"bg": "Bulgarian", "it": "Italian"}[lang]
            sizes.add(len(td.labels_of(doc)))
    assert {3, 5} <= sizes
    docs, pool = split_data(td, {"train_languages": {"exams": "it"}}, "bg", "it")
    assert {d["info"]["language"] for d in docs} == {"Bulgarian"} and {d["info"]["language"] for d in pool} == {"Italian"}


def test_group_field_takes_one_or_several_nested_fields(tmp_path: Path) -> None:
    node = {"data": {"local": {"validation": "v.jsonl"}}, "label_field": "label", "labels": [0, 1], "positive_label": 1,
            "templates": {"t": {"prompt": "{{ answer }} {{ candidate }}", "candidates": {0: "no", 1: "yes"}}}}
    assert parse_task_def("x", tmp_path / "x.yaml", {**node, "group_field": "qid"}).group_field == ("qid",)
    assert parse_task_def("x", tmp_path / "x.yaml", {**node, "group_field": ["idx.paragraph", "idx.question"]}).group_field == (
        "idx.paragraph", "idx.question")
    for bad in ([], ["idx paragraph"], 3):
        with pytest.raises(ConfigError, match=r"key 'group_field': expected a (data )?field name"):
            parse_task_def("x", tmp_path / "x.yaml", {**node, "group_field": bad})

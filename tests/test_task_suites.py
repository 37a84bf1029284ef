"""The packaged task suites (conf/task_def/<task>.yaml reading hub datasets) on fixtures in each
dataset's REAL hub schema: field names and label encoding as on the hub.

The fixtures live in tests/fixtures/hub/<hub id>/<config or 'default'>/<hub split>.jsonl and are
found through ``$FEWSHOT_HF_MIRROR``, which swaps the download for these files while everything else
-- ``datasets`` (its json builder), the task definition, templates, label checks -- runs as for the
hub. A definition whose field names or labels do not match the hub's schema fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fewshot_eval.config import ConfigError, conf_dir
from fewshot_eval.evaluate.tasks import HF_MIRROR_ENV, HFSource, is_manual, load_task_def, select_templates, split_data

HUB = Path(__file__).parent / "fixtures" / "hub"
STORYCLOZE = Path(__file__).parent / "fixtures" / "storycloze"
SUITES = sorted(p.stem for p in (conf_dir() / "task_def").glob("*.yaml") if isinstance(load_task_def(p.stem).source, HFSource))
# the languages that have fixtures (multilingual tasks)
FIXTURE_LANGS = {"xcopa": ["it", "sw"], "xnli": ["en", "de"], "pawsx": ["en", "de"], "xwinograd": ["en", "fr"],
                 "xstorycloze": ["en", "es"], "crows_pairs": ["english", "french"], "exams": ["bg", "it"],
                 "blimp": ["anaphor_gender_agreement", "determiner_noun_agreement_1"]}


@pytest.fixture(autouse=True)
def mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(HF_MIRROR_ENV, str(HUB))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))  # the json builder's arrow files
    monkeypatch.setenv("STORYCLOZE_DATA_DIR", str(STORYCLOZE))  # a manual download: the CSV files as distributed
    return HUB


def test_every_suite_has_fixtures() -> None:
    expected = {"copa", "cb", "rte", "boolq", "wic", "wsc", "hellaswag", "piqa", "winogrande", "openbookqa", "storycloze", "xcopa", "xnli",
                "pawsx", "xwinograd", "xstorycloze", "crows_pairs", "stereoset_intrasentence", "stereoset_intersentence",
                "arc_easy", "arc_challenge", "blimp", "multirc", "exams", "wikitext", "wmt14_fr_en", "wmt14_en_fr", "wmt16_de_en", "wmt16_en_de",
                "wmt16_ro_en", "wmt16_en_ro"}
    assert expected <= set(SUITES)
    for name in SUITES:
        td = load_task_def(name)
        assert isinstance(td.source, HFSource) and ((HUB / td.source.path).is_dir() or is_manual(td)), f"{name}: no fixture for {td.source.path}"


@pytest.mark.parametrize("name", SUITES)
def test_suite_reads_its_hub_schema_and_renders_every_template(name: str) -> None:
    td = load_task_def(name)
    for lang in FIXTURE_LANGS.get(name, [None]):
        if td.languages:
            assert lang in td.languages
        params = {"templates": {name: list(td.templates)}}
        eval_docs, pool = split_data(td, params, lang, None)
        assert eval_docs, f"{name} {lang}: no rows"
        for tname in select_templates(td, params):
            tmpl = td.templates[tname]
            for doc in eval_docs + pool:
                if td.kind == "perplexity":  # one document per row
                    assert tmpl.render(doc, lang).strip(), f"{name}.{tname}: empty document for {doc['_id']}"
                    continue
                prefix, suffix = tmpl.split(doc, lang)
                if td.kind == "generate":  # a prompt up to the target, and references to compare with
                    assert prefix.strip() and doc["_references"] and all(r.strip() for r in doc["_references"]), (name, doc["_id"])
                    continue
                assert doc["_label"] in td.labels_of(doc), f"{name}: gold {doc['_label']!r} of {doc['_id']} is not a candidate"
                cands = [tmpl.verbalise(doc, label, lang) for label in td.labels_of(doc)]
                assert all(c.strip() for c in cands), f"{name}.{tname}: empty candidate for {doc['_id']}"
                assert len(set(cands)) == len(cands), f"{name}.{tname}: candidates not distinct for {doc['_id']}: {cands}"
                assert (prefix + suffix).strip() or tmpl.source.strip() == "{{ candidate }}"


def test_label_encodings_match_the_hub() -> None:
    """Spot checks of gold -> verbalisation on known rows (the meaning of the hub's integer labels)."""
    def gold_text(name: str, lang: str | None = None, i: int = 0, split: str | None = None) -> tuple[str, dict]:
        td = load_task_def(name)
        docs, pool = split_data(td, {}, lang, None)
        rows = docs if split is None else pool
        doc = rows[i]
        return td.templates[td.default_template].verbalise(doc, doc["_label"], lang), doc

    text, doc = gold_text("copa")  # "The women met for coffee." -> cause: they wanted to catch up (label 1 = choice2)
    assert text == "they wanted to catch up with each other."
    text, doc = gold_text("winogrande")  # answer "1" (a string on the hub) = option1
    assert doc["answer"] == "1" and text == doc["option1"]
    text, doc = gold_text("openbookqa")  # answerKey letter -> the text at that position
    assert text == doc["choices"]["text"][doc["choices"]["label"].index(doc["answerKey"])]
    text, doc = gold_text("storycloze")  # AnswerRightEnding is 1-based
    assert text == doc[f"RandomFifthSentenceQuiz{doc['AnswerRightEnding']}"] == "He is happy now."
    text, doc = gold_text("xnli", "en")  # 0 entailment, 1 neutral, 2 contradiction
    assert {0: "Yes", 1: "Also", 2: "No"}[doc["label"]] == text
    text, doc = gold_text("stereoset_intrasentence")  # gold_label 1 = stereotype
    assert text == doc["sentences"]["sentence"][doc["sentences"]["gold_label"].index(1)]
    assert load_task_def("pawsx").templates["googletranslate"].verbalise(doc | {}, "1", "de") == "Ja"


def test_a_schema_error_fails_with_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "hub" / "aps" / "super_glue" / "cb"
    bad.mkdir(parents=True)
    # labels as strings (another copy of CB on the hub) instead of the ClassLabel integers
    (bad / "train.jsonl").write_text('{"premise": "p", "hypothesis": "h", "idx": 0, "label": "entailment"}\n')
    (bad / "validation.jsonl").write_text('{"premise": "p", "hypothesis": "h", "idx": 0, "label": "entailment"}\n')
    monkeypatch.setenv(HF_MIRROR_ENV, str(tmp_path / "hub"))
    td = load_task_def("cb")
    with pytest.raises(ConfigError, match=r"task_def 'cb' .* key 'labels': split 'validation' has gold label 'entailment', not one of \['0', '1', '2'\]"):
        split_data(td, {}, None, None)
    bad = tmp_path / "hub" / "aps" / "super_glue" / "copa"
    bad.mkdir(parents=True)
    (bad / "validation.jsonl").write_text('{"premise": "p.", "choice_1": "a", "choice_2": "b", "question": "cause", "idx": 0, "label": 0}\n')
    (bad / "train.jsonl").write_text((bad / "validation.jsonl").read_text())
    with pytest.raises(ConfigError, match=r"task 'copa' template '.*': field 'choice1' is not in the data"):
        split_data(load_task_def("copa"), {}, None, None)


def _sentence_logprob(model, tok, text: str) -> float:  # noqa: ANN001
    """log P(text) after the end-of-text token, straight from transformers (the reference)."""
    import torch

    ids = [tok.eos_token_id] + tok(text)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].log_softmax(-1)
    return float(sum(logits[i, ids[i + 1]] for i in range(len(ids) - 1)))


@pytest.mark.slow
def test_bias_metrics_match_a_reference_computed_from_the_model() -> None:
    """CrowS-Pairs and StereoSet with the tiny model: the registered metrics equal the ones computed here
    from sentence log-probabilities taken directly from transformers."""
    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fewshot_eval.config import EVAL_KEYS
    from fewshot_eval.evaluate import build_evaluator
    from fewshot_eval.evaluate.tiny_model import tiny_gpt2_path

    base = yaml.safe_load((conf_dir() / "config.yaml").read_text())
    params = {k: base.get(k) for k in EVAL_KEYS} | {"predictor": "clm", "scoring": "sum", "device": "cpu"}
    evaluator = build_evaluator({"name": "tiny", "predictor": "clm", "weights": "tiny-gpt2", "revision": None}, params)
    result = evaluator.run_trial(["crows_pairs", "stereoset_intrasentence"], params, 0, 0)
    path = tiny_gpt2_path()
    model, tok = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)

    crows = split_data(load_task_def("crows_pairs"), {}, "english", None)[0]
    prefers_more = [_sentence_logprob(model, tok, d["sent_more"]) > _sentence_logprob(model, tok, d["sent_less"]) for d in crows]
    assert result.metrics["crows_pairs.default.english"]["pct_stereotype"] == pytest.approx(100 * sum(prefers_more) / len(crows))

    stereo = split_data(load_task_def("stereoset_intrasentence"), {}, None, None)[0]
    kinds = {0: "anti", 1: "stereo", 2: "unrelated"}
    best = []
    for d in stereo:
        scores = [_sentence_logprob(model, tok, s) for s in d["sentences"]["sentence"]]
        best.append(kinds[d["sentences"]["gold_label"][scores.index(max(scores))]])
    meaningful = [b for b in best if b != "unrelated"]
    lms = 100 * len(meaningful) / len(best)
    ss = 100 * meaningful.count("stereo") / len(meaningful) if meaningful else 0.0
    got = result.metrics["stereoset_intrasentence.default"]
    assert got["lm_score"] == pytest.approx(lms) and got["stereotype_score"] == pytest.approx(ss)
    assert got["icat"] == pytest.approx(lms * min(ss, 100 - ss) / 50)


def test_hellaswag_text_equals_lm_evals_preprocessing() -> None:
    """The Jinja cleaning of the template gives lm-eval's own preprocessed query and endings."""
    from lm_eval.tasks.hellaswag.utils import preprocess

    td = load_task_def("hellaswag")
    tmpl = td.templates["default"]
    docs, pool = split_data(td, {}, None, None)
    for doc in docs + pool:
        prefix, _ = tmpl.split(doc)
        assert prefix == preprocess(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"].capitalize()) + " "
        assert [tmpl.verbalise(doc, label) for label in td.labels] == [preprocess(e) for e in doc["endings"]]


@pytest.mark.slow
def test_every_suite_runs_with_the_tiny_model() -> None:
    """One trial of every suite task (the fixture languages) with the tiny GPT-2, 1-shot where the task
    has a demonstration pool: prompts, candidates and scoring work end to end, metrics in range."""
    import yaml

    from fewshot_eval.config import EVAL_KEYS
    from fewshot_eval.evaluate import build_evaluator

    base = yaml.safe_load((conf_dir() / "config.yaml").read_text())
    params = {k: base.get(k) for k in EVAL_KEYS} | {"predictor": "clm", "device": "cpu", "scoring": "mean",
                                                    "languages": {k: v for k, v in FIXTURE_LANGS.items()}}
    evaluator = build_evaluator({"name": "tiny", "predictor": "clm", "weights": "tiny-gpt2", "revision": None}, params)
    result = evaluator.run_trial(SUITES, params, 1, 0)
    for name in SUITES:
        subs = [s for s in result.metrics if s.split(".")[0] == name]
        assert subs, name
        for sid in subs:
            td = load_task_def(name)
            value = result.metrics[sid][td.preferred_metric]
            if td.kind == "perplexity":
                assert 1.0 < value < float("inf"), (sid, value)
                continue
            assert 0.0 <= value <= 100.0, (sid, value)
            if td.kind == "generate":
                assert all(isinstance(r["output"], str) for r in result.predictions[sid])
                continue
            docs = {d["_id"]: d for d in split_data(td, params, sid.split(".")[2] if td.languages else None, None)[0]}
            assert all(len(r["candidates"]) == len(td.labels_of(docs[r["id"]])) for r in result.predictions[sid])


def test_gold_label_is_one_of_the_labels_and_excludes_label_field(tmp_path: Path) -> None:
    from fewshot_eval.evaluate.tasks import parse_task_def

    node = {"data": {"local": {"validation": "v.jsonl"}}, "labels": ["more", "less"], "gold_label": "most",
            "templates": {"t": {"prompt": "{{ candidate }}", "candidates": {"more": "{{ a }}", "less": "{{ b }}"}}}}
    with pytest.raises(ConfigError, match=r"key 'gold_label': 'most' is not one of labels \['more', 'less'\]"):
        parse_task_def("x", tmp_path / "x.yaml", node)
    with pytest.raises(ConfigError, match=r"give only one of 'label_field' .* and 'gold_label'"):
        parse_task_def("x", tmp_path / "x.yaml", {**node, "gold_label": "more", "label_field": "label"})
    assert parse_task_def("x", tmp_path / "x.yaml", {**node, "gold_label": "more"}).gold_label == "more"

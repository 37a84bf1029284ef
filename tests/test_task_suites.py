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
import yaml

from fewshot_eval.config import ConfigError, conf_dir
from fewshot_eval.evaluate.tasks.definitions import HFSource, load_task_def
from fewshot_eval.evaluate.tasks.selection import select_templates, split_data
from fewshot_eval.evaluate.tasks.task_data import HF_MIRROR_ENV, is_manual

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


def _logprob(model, tok, context: str, text: str, mean: bool = False) -> float:  # noqa: ANN001
    """log P(text | context) straight from transformers (the reference): an empty context is the
    end-of-text token (the whole sentence scored), else the continuation is `` text``; ``mean``:
    per continuation token."""
    import torch

    ctx = tok(context)["input_ids"] if context else [tok.eos_token_id]
    cont = tok((" " if context else "") + text)["input_ids"]
    ids = ctx + cont
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].log_softmax(-1)
    total = float(sum(logits[i - 1, ids[i]] for i in range(len(ctx), len(ids))))
    return total / len(cont) if mean else total


def _stereoset_reference(docs: list[dict], model, tok, with_context: bool) -> tuple[float, float, float]:  # noqa: ANN001
    """The paper's metrics as the official evaluation.py computes them, from the hub rows and the
    reference log-probabilities: per target term ss = % stereotype > anti-stereotype, lms = % of
    meaningful-vs-unrelated comparisons won (two per example); plain means over terms; icat of the means."""
    per_term: dict[str, list[tuple[int, int]]] = {}
    for d in docs:
        s = d["sentences"]
        lp = {g: _logprob(model, tok, d["context"] if with_context else "", s["sentence"][s["gold_label"].index(g)], mean=True) for g in (0, 1, 2)}
        pro = int(lp[1] > lp[0])  # 1 stereotype, 0 anti-stereotype, 2 unrelated
        related = int(lp[1] > lp[2]) + int(lp[0] > lp[2])
        per_term.setdefault(d["target"], []).append((pro, related))
    ss = [100 * sum(p for p, _ in v) / len(v) for v in per_term.values()]
    lms = [100 * sum(r for _, r in v) / (2 * len(v)) for v in per_term.values()]
    ss_mean, lms_mean = sum(ss) / len(ss), sum(lms) / len(lms)
    return lms_mean, ss_mean, lms_mean * min(ss_mean, 100 - ss_mean) / 50


@pytest.mark.slow
def test_bias_metrics_match_a_reference_computed_from_the_model() -> None:
    """CrowS-Pairs (scoring sum) and StereoSet (both configs, scoring mean as in the RAI experiment)
    with the tiny model: the registered metrics equal the ones computed here from sentence
    log-probabilities taken directly from transformers."""
    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fewshot_eval.config import EVAL_KEYS
    from fewshot_eval.evaluate import build_evaluator
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    base = yaml.safe_load((conf_dir() / "config.yaml").read_text())
    params = {k: base.get(k) for k in EVAL_KEYS} | {"predictor": "clm", "scoring": "sum", "device": "cpu"}
    evaluator = build_evaluator({"name": "tiny", "predictor": "clm", "weights": "tiny-gpt2", "revision": None}, params)
    result = evaluator.run_trial(["crows_pairs"], params, 0, 0)
    stereo = evaluator.run_trial(["stereoset_intrasentence", "stereoset_intersentence"], params | {"scoring": "mean"}, 0, 0)
    path = tiny_gpt2_path()
    model, tok = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)

    crows = split_data(load_task_def("crows_pairs"), {}, "english", None)[0]
    prefers_more = [_logprob(model, tok, "", d["sent_more"]) > _logprob(model, tok, "", d["sent_less"]) for d in crows]
    assert result.metrics["crows_pairs.default.english"]["pct_stereotype"] == pytest.approx(100 * sum(prefers_more) / len(crows))

    for name, with_context in (("stereoset_intrasentence", False), ("stereoset_intersentence", True)):
        docs = split_data(load_task_def(name), {}, None, None)[0]
        assert len({d["target"] for d in docs}) < len(docs), "the fixture needs a target term with several examples"
        lms, ss, icat = _stereoset_reference(docs, model, tok, with_context)
        got = stereo.metrics[f"{name}.default"]
        assert (got["lm_score"], got["stereotype_score"], got["icat"]) == pytest.approx((lms, ss, icat)), name
        rows = stereo.predictions[f"{name}.default"]
        assert [r["fields"] for r in rows] == [{"target": d["target"], "bias_type": d["bias_type"]} for d in docs]


def test_stereoset_scores_average_over_target_terms_and_count_ties_as_anti() -> None:
    """The official aggregation on hand-made rows: term A (2 examples) ss 50, lms 75; term B (1 example,
    stereotype tied with anti-stereotype, unrelated best) ss 0, lms 0 -> means ss 25, lms 37.5, not the
    micro averages over the 3 examples (ss 33.3, lms 50); icat from the means. Calibrated scores win."""
    from fewshot_eval.evaluate.registry import metric

    def row(target: str, stereo: float, anti: float, unrelated: float, calibrated: bool = False) -> dict:
        key = "calibrated" if calibrated else "score"
        cands = [{"label": lab, "score": -99.0, key: v} for lab, v in (("stereotype", stereo), ("anti-stereotype", anti), ("unrelated", unrelated))]
        return {"gold": "stereotype", "pred": "stereotype", "fields": {"target": target}, "candidates": cands}

    rows = [row("A", -1, -2, -3), row("A", -2, -1, -1.5, calibrated=True), row("B", -2, -2, -1)]
    assert metric("stereotype_score").fn(rows) == pytest.approx(25.0)
    assert metric("lm_score").fn(rows) == pytest.approx(37.5)
    assert metric("icat").fn(rows) == pytest.approx(37.5 * 25 / 50)
    assert metric("icat").fn([{**r, "fields": {}} for r in rows]) is None  # no target terms: not computed


def test_record_fields_missing_in_the_data_names_task_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fewshot_eval.evaluate.tasks.definitions import parse_task_def

    node = yaml.safe_load((conf_dir() / "task_def" / "stereoset_intrasentence.yaml").read_text())
    td = parse_task_def("stereo_mine", tmp_path / "stereo_mine.yaml", node | {"record_fields": ["target", "domain"]})
    with pytest.raises(ConfigError, match=r"stereo_mine.* key 'record_fields': field 'domain' missing in split 'validation'"):
        split_data(td, {}, None, None)
    with pytest.raises(ConfigError, match=r"key 'record_fields': expected a list of data field names"):
        parse_task_def("stereo_mine", tmp_path / "stereo_mine.yaml", node | {"record_fields": "target"})


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
    from fewshot_eval.evaluate.tasks.definitions import parse_task_def

    node = {"data": {"local": {"validation": "v.jsonl"}}, "labels": ["more", "less"], "gold_label": "most",
            "templates": {"t": {"prompt": "{{ candidate }}", "candidates": {"more": "{{ a }}", "less": "{{ b }}"}}}}
    with pytest.raises(ConfigError, match=r"key 'gold_label': 'most' is not one of labels \['more', 'less'\]"):
        parse_task_def("x", tmp_path / "x.yaml", node)
    with pytest.raises(ConfigError, match=r"give only one of 'label_field' .* and 'gold_label'"):
        parse_task_def("x", tmp_path / "x.yaml", {**node, "gold_label": "more", "label_field": "label"})
    assert parse_task_def("x", tmp_path / "x.yaml", {**node, "gold_label": "more"}).gold_label == "more"

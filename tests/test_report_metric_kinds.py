"""Reports of the newer metric kinds: generation (exact_match, f1, BLEU/chrF with their sacrebleu
signatures), perplexity (lower is better), bias scores (50 is ideal) and lm-eval catalog
sub-results (their own 0-1 scale): the preferred metric per sub-result, direction-aware deltas,
McNemar's test only where rows hold gold and predicted labels, averages that never pool scales."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from cli_helpers import run_cli


def rows(model: str, metric: str, values: list[float], task: str = "wiki_demo", result: str = "wiki_demo.text") -> list[dict]:
    return [{"run_name": "demo", "model": model, "task_setting": task, "nshot": 0, "result": result, "task": task,
             "template": result.split(".")[1] if "." in result else None, "language": None, "trial": t, "metric": metric,
             "value": v, "preferred": True, "weights": "w", "revision": None, "scoring": "sum", "seed": 0,
             "result_dir": f"/nonexistent/{model}/{task}"} for t, v in enumerate(values)]


def test_every_builtin_metric_declares_the_direction_lm_eval_gives_it() -> None:
    """Independent reference: lm-eval's own higher_is_better of the metrics both define."""
    import lm_eval.api.metrics  # noqa: F401
    from lm_eval.api.registry import HIGHER_IS_BETTER_REGISTRY

    from fewshot_eval.evaluate import registry

    names = registry.metric_names()
    shared = [n for n in names if n in HIGHER_IS_BETTER_REGISTRY]
    assert {"word_perplexity", "byte_perplexity", "bits_per_byte", "exact_match", "f1", "bleu", "chrf"} <= set(shared)
    for n in shared:
        assert registry.metric(n).higher_is_better == HIGHER_IS_BETTER_REGISTRY[n], n
    assert registry.metric("gold_perplexity").higher_is_better is False
    assert {n: registry.metric(n).ideal for n in ("stereotype_score", "pct_stereotype")} == {"stereotype_score": 50.0, "pct_stereotype": 50.0}
    assert all(registry.metric(n).ideal is None for n in names if n not in ("stereotype_score", "pct_stereotype"))


def test_deltas_say_which_way_is_better_and_averages_keep_scales_apart() -> None:
    from fewshot_eval.report import tables

    df = pd.DataFrame(
        rows("a", "word_perplexity", [100.0, 110.0]) + rows("b", "word_perplexity", [80.0, 90.0])
        + rows("a", "stereotype_score", [60.0, 60.0], "stereoset", "stereoset.intra")
        + rows("b", "stereotype_score", [45.0, 45.0], "stereoset", "stereoset.intra")
        + rows("a", "accuracy", [50.0, 60.0], "copa_demo", "copa_demo.default") + rows("b", "accuracy", [40.0, 50.0], "copa_demo", "copa_demo.default")
        + rows("a", "f1", [20.0, 30.0], "qa_demo", "qa_demo.default") + rows("b", "f1", [20.0, 30.0], "qa_demo", "qa_demo.default")
        + rows("a", "acc", [0.5, 0.7], "lm_eval_demo", "lm_eval:demo_copa") + rows("b", "acc", [0.5, 0.7], "lm_eval_demo", "lm_eval:demo_copa")
    )
    t = tables.build(df)
    assert "word_perplexity: lower is better" in t.notes and "stereotype_score: 50 is ideal" in t.notes
    assert not any(n.startswith(("accuracy", "acc:", "f1")) for n in t.notes)
    frame = tables.frame(t, compare="a")
    b = {c[-1] if isinstance(c, tuple) else c: v for c, v in frame.loc["b"].items()}
    assert b["word_perplexity"].startswith("-20.00") and b["word_perplexity"].endswith("(better)")  # lower perplexity
    assert b["stereotype_score"].startswith("-15.00") and b["stereotype_score"].endswith("(better)")  # 45 is nearer 50 than 60
    assert b["accuracy"].startswith("-10.00") and "better" not in b["accuracy"] and "worse" not in b["accuracy"]
    recs = {(r["model"], r["metric"]): r for r in tables.cell_records(t, compare="a") if "mean" in r}
    assert recs[("b", "word_perplexity")]["better_than_ref"] is True and recs[("b", "accuracy")]["better_than_ref"] is False
    assert recs[("a", "word_perplexity")]["direction"] == "lower is better"

    tables.add_averages(t)
    pooled = {c: v for (r, c), v in t.averages.items() if r == ("a",) and "(all)" in c}
    [(col, avg)] = [(c, v) for c, v in pooled.items() if "preferred" in c]
    assert avg == pytest.approx((55.0 + 25.0) / 2)  # accuracy and f1 only: no perplexity, no 0-1 acc, no ideal-50 score


def test_mcnemar_only_for_label_predictions(tmp_path: Path) -> None:
    """Single-trial cells: perplexity and generation rows get no p-value (their rows have no
    gold/pred labels; before, every row counted as 'correct' and p was 1.0); label rows do."""
    from fewshot_eval.report import tables

    def write(model: str, result: str, lines: list[dict]) -> str:
        d = tmp_path / model / result
        (d / "trial0").mkdir(parents=True)
        (d / "trial0" / f"{result}.predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        return str(d)

    cells = []
    for model, ll, output, preds in (("a", -120.0, "white", ["0", "1", "0", "1"]), ("b", -100.0, "red", ["0", "0", "0", "0"])):
        wiki = write(model, "wiki_demo.text", [{"id": f"w{i}", "gold": "", "pred": "", "loglikelihood": ll, "n_words": 10, "n_bytes": 50} for i in range(4)])
        qa = write(model, "qa_demo.default", [{"id": f"q{i}", "prompt": "p", "output": output, "references": ["white"]} for i in range(4)])
        copa = write(model, "copa_demo.default", [{"id": str(i), "gold": "0", "pred": p, "correct": p == "0"} for i, p in enumerate(preds)])
        cells += [{**r, "result_dir": wiki} for r in rows(model, "word_perplexity", [-ll])]
        cells += [{**r, "result_dir": qa} for r in rows(model, "exact_match", [100.0 if output == "white" else 0.0], "qa_demo", "qa_demo.default")]
        cells += [{**r, "result_dir": copa} for r in rows(model, "accuracy", [100.0 * preds.count("0") / 4], "copa_demo", "copa_demo.default")]
    t = tables.build(pd.DataFrame(cells))
    recs = {r["metric"]: r for r in tables.cell_records(t, compare="a") if r.get("model") == "b" and "mean" in r}
    assert recs["word_perplexity"]["p"] is None and recs["exact_match"]["p"] is None
    assert recs["accuracy"]["p"] == pytest.approx(0.5)  # 2 discordant examples, both for b: binomial two-sided
    b = {c[-1] if isinstance(c, tuple) else c: v for c, v in tables.frame(t, compare="a").loc["b"].items()}
    assert "p=" not in b["word_perplexity"] and "p=" not in b["exact_match"] and "p=0.5" in b["accuracy"]

    # several correct answers (gold is a list): a prediction among them is correct
    many = []
    for model, preds in (("a", ["2", "2", "2", "2"]), ("b", ["0", "1", "0", "1"])):
        d = write(model, "multi_demo.default", [{"id": str(i), "gold": ["0", "1"], "pred": p} for i, p in enumerate(preds)])
        many += [{**r, "result_dir": d} for r in rows(model, "accuracy", [100.0 * sum(p in "01" for p in preds) / 4], "multi_demo", "multi_demo.default")]
    [multi] = [r for r in tables.cell_records(tables.build(pd.DataFrame(many)), compare="a") if r.get("model") == "b" and "mean" in r]
    assert multi["p"] == pytest.approx(0.125)  # 4 discordant examples, all for b (as a list gold never equals a label: p 1.0)


def test_signatures_and_missing_values_never_break_aggregation(tmp_path: Path) -> None:
    from fewshot_eval.report.collect import load_results, trial_table
    from fewshot_eval.store import layout
    from fewshot_eval.store.results import aggregate

    sig = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    trials = [{"bleu": 10.0, "bleu_signature": sig, "f1a": 30.0, "note": "x1"}, {"bleu": 20.0, "bleu_signature": sig, "f1a": None, "note": "x2"}]
    for t, m in enumerate(trials):
        d = layout.trial_dir(tmp_path, t)
        d.mkdir(parents=True)
        (d / layout.METRICS).write_text(json.dumps({"metrics": {"translate_demo.default": m}}))
    agg = aggregate(tmp_path, [0, 1])["translate_demo.default"]
    assert agg["bleu"]["per_trial"] == [10.0, 20.0] and agg["bleu_signature"] == sig
    assert agg["f1a"] == [30.0, None] and agg["note"] == ["x1", "x2"]  # not numeric in every trial: no mean
    agg["preferred_metric"] = "bleu"
    (tmp_path / "results.json").write_text(json.dumps({"model": "m", "task_setting": "translate_demo", "nshot": 0, "trials": [0, 1],
                                                       "results": {"translate_demo.default": agg}}))
    df = trial_table(load_results([tmp_path / "results.json"]))
    assert set(df["metric"]) == {"bleu"} and set(df["signature"]) == {sig} and sorted(df["value"]) == [10.0, 20.0]


@pytest.mark.slow
def test_real_results_of_every_kind_report_their_preferred_metric_and_signature(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "tiny_b.yaml").write_text("name: tiny_b\npredictor: clm\nweights: tiny-gpt2\neval:\n  max_length: 512\n")
    run_cli(["--config-dir", str(conf), "-m", "model=tiny_gpt2,tiny_b", "task=qa_demo,wiki_demo,lm_eval_demo,translate_demo",
             "nshot=0", "n_eval_samples=4", "num_trials=1"], workdir)
    prefs = {}
    for f in (workdir / "results").rglob("results.json"):
        for sub, ms in json.loads(f.read_text())["results"].items():
            prefs[sub] = ms["preferred_metric"]
    assert prefs["lm_eval:demo_copa"] == "acc" and prefs["wiki_demo.text"] == "word_perplexity"
    cells = json.loads(run_cli(["report", "results", "--compare", "tiny_gpt2", "--format", "json"], workdir).stdout)
    shown = {(c["task"], c["metric"]) for c in cells if c["model"] == "tiny_b"}  # each sub-result's preferred metric
    assert shown == {(sub.split(".")[0], m) for sub, m in prefs.items()}, shown
    p = {c["task"]: c["p"] for c in cells if c["model"] == "tiny_b"}
    assert p["copa_demo"] is not None and all(p[k] is None for k in p if k != "copa_demo"), p
    term = run_cli(["report", "results"], workdir).stdout
    signatures = {f"note: bleu signature {ms['bleu_signature']}" for f in (workdir / "results").rglob("results.json")
                  for ms in json.loads(f.read_text())["results"].values() if "bleu_signature" in ms}
    assert prefs["translate_demo.default"] == "bleu" and prefs["qa_demo.default"] == "f1"
    assert len(signatures) == 1 and signatures <= set(term.splitlines()), term  # shown once, as stored
    assert re.search(r"^note: word_perplexity: lower is better$", term, re.M), term
    run_cli(["report", "results", "--html", "r.html"], workdir)
    page = (workdir / "r.html").read_text()
    assert next(iter(signatures)).split(" signature ")[1] in page and "word_perplexity, lower is better" in page

"""Perplexity: rolling log-likelihoods and their metrics equal lm-evaluation-harness's on the tiny GPT-2."""

from __future__ import annotations

import json
import math
import random

import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate import build_evaluator

MODEL = {"name": "tiny_gpt2", "predictor": "clm", "weights": "tiny-gpt2"}


def _params(**kw):
    return {"seed": 0, "predictor": "clm", "device": "cpu", "dtype": "float32", "batch_size": 8, **kw}


@pytest.fixture(scope="module")
def hflm():
    """lm-evaluation-harness's own HF model on the very same weights, with a short context (64 tokens)."""
    from lm_eval.models.huggingface import HFLM

    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    return HFLM(pretrained=str(tiny_gpt2_path()), max_length=64, batch_size=4, device="cpu")


def _lm_eval_rolling(hflm, texts):
    from lm_eval.api.instance import Instance

    return hflm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)], disable_tqdm=True)


def _fresh_documents(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = "river town stone bridge market winter the a of and to in was is old new north light".split()
    docs = []
    for _ in range(n):
        k = rng.choice([1, 7, 30, 120, 400])  # some far longer than 64 tokens: several windows
        docs.append(" ".join(rng.choice(words) for _ in range(k)) + rng.choice([".", "!\n", " 12 x"]))
    return docs + [""]


# |ours - lm-eval| per document: both add float32 window sums, and a document's total reaches -2800 here
# (float32's spacing there is 2.4e-4); measured 3.1e-5 (tiny GPT-2, 2-core CPU). A token off by 1e-3 fails it.
ROLLING_TOL = 1e-4


@pytest.mark.slow
def test_loglikelihood_rolling_equals_lm_eval(hflm):
    docs = _fresh_documents(8, seed=7)
    pred = build_evaluator(MODEL, _params(max_length=64)).predictor
    assert "loglikelihood_rolling" in pred.operations
    ours = pred.loglikelihood_rolling(docs)
    ref = _lm_eval_rolling(hflm, docs)
    for text, o, r in zip(docs, ours, ref):
        assert abs(o.total - r) <= ROLLING_TOL, (text[:40], o.total, r)
        assert len(o.logprobs) == len(pred.tokenizer.encode(text, add_special_tokens=False))
    assert any(len(o.logprobs) > 3 * 64 for o in ours)  # several windows were exercised
    assert ours[-1].total == 0.0 and ours[-1].logprobs == []  # an empty document


@pytest.mark.slow
def test_perplexity_task_metrics_equal_lm_eval(hflm):
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity

    # the 8 short articles (2-3 windows of 64 tokens each); the long ones are covered below
    params = _params(max_length=64, n_eval_samples=8, templates={"wiki_demo": ["text", "titled"]})
    ev = build_evaluator(MODEL, params)
    res = ev.run_trial(["wiki_demo"], params, 0, 0)
    assert set(res.metrics) == {"wiki_demo.text", "wiki_demo.titled"}
    json.dumps([res.metrics, res.predictions, res.info])
    for sid, rows in res.predictions.items():
        texts = [r["document"] for r in rows]
        ref = _lm_eval_rolling(hflm, texts)
        words = [len(t.split()) if t == t.strip() else None for t in texts]  # = lm-eval's re.split(r"\s+") here
        for r, ll, w in zip(rows, ref, words):
            assert abs(r["loglikelihood"] - ll) <= ROLLING_TOL
            assert r["n_bytes"] == len(r["document"].encode("utf-8"))
            if w is not None:
                assert r["n_words"] == w
        m = res.metrics[sid]
        by_words = [(ll, r["n_words"]) for r, ll in zip(rows, ref)]
        by_bytes = [(ll, r["n_bytes"]) for r, ll in zip(rows, ref)]
        assert math.isclose(m["word_perplexity"], weighted_perplexity(by_words), rel_tol=1e-4)
        assert math.isclose(m["byte_perplexity"], weighted_perplexity(by_bytes), rel_tol=1e-4)
        assert abs(m["bits_per_byte"] - bits_per_byte(by_bytes)) <= 1e-4
        assert m["n_examples"] == 8 and all(r["n_tokens"] > 64 for r in rows)
    assert res.predictions["wiki_demo.titled"][0]["document"].startswith("= Harbor Town =\n\n")


def test_perplexity_with_model_context_and_nshot_ignored():
    """The model's own context (1024) by default; the two long articles exceed it; nshot does not apply."""
    params = _params()
    ev = build_evaluator(MODEL, params)
    assert ev.predictor.max_length == 1024
    res = ev.run_trial(["wiki_demo"], params, 2, 0)
    rows = res.predictions["wiki_demo.text"]
    assert sum(r["n_tokens"] > 1024 for r in rows) == 2
    assert any("nshot=2 ignored" in w for w in res.info["warnings"])
    from fewshot_eval.evaluate.rescoring import recalc_metrics

    names = ["word_perplexity", "byte_perplexity", "bits_per_byte"]
    assert recalc_metrics(rows, {"scoring": "mean"}, "wiki_demo", names) == res.metrics["wiki_demo.text"]


@pytest.mark.slow
def test_gold_perplexity_equals_lm_eval_loglikelihood(hflm):
    from lm_eval.api.instance import Instance

    params = _params(max_length=64, n_eval_samples=5)
    res = build_evaluator(MODEL, params).run_trial(["hellaswag_demo"], params, 0, 0)
    rows = res.predictions["hellaswag_demo.default"]
    pairs = [(r["prompt"], c["text"]) for r in rows for c in r["candidates"] if c["label"] == r["gold"]]
    ref = hflm.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)], disable_tqdm=True)
    n_tokens = sum(len(hflm._encode_pair(ctx, cont)[1]) for ctx, cont in pairs)
    expected = math.exp(-sum(ll for ll, _ in ref) / n_tokens)
    assert math.isclose(res.metrics["hellaswag_demo.default"]["gold_perplexity"], expected, rel_tol=1e-4)
    # baselines have no log-probs: the metric is left out, the others stay
    base = build_evaluator({"name": "random"}, _params(predictor="random")).run_trial(["hellaswag_demo"], _params(predictor="random"), 0, 0)
    assert "gold_perplexity" not in base.metrics["hellaswag_demo.default"] and "accuracy" in base.metrics["hellaswag_demo.default"]


def test_baseline_on_a_perplexity_task_is_a_planning_error():
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.tasks.task_checks import check_tasks

    check_tasks(["wiki_demo"], _params(), config_dirs())
    with pytest.raises(ConfigError, match=r"predictor 'random'.*perplexity task.*loglikelihood_rolling.*Predictors that do: clm"):
        check_tasks(["wiki_demo"], _params(predictor="random"), config_dirs())


@pytest.mark.parametrize("patch, message", [
    ({"labels": [0, 1]}, "key 'labels': does not apply to a task of kind 'perplexity'"),
    ({"templates": {"t": {"prompt": "{{ text }}"}}}, "key 'templates.t': unknown key 'prompt'"),
    ({"templates": {"t": {"vars": {}}}}, "key 'templates.t': missing required key 'document'"),
    ({"templates": {"t": {"document": "{{ text "}}}, "key 'templates.t' key 'document': Jinja2 syntax error"),
    ({"kind": "ppl"}, "key 'kind': unknown kind 'ppl'. Valid: choice, generate, perplexity, minimal_pairs"),
    ({"metrics": ["word_perplexity", "nope"]}, "unknown metric 'nope'"),
])
def test_perplexity_task_def_errors(patch, message):
    from pathlib import Path

    import yaml

    from fewshot_eval.config import conf_dir
    from fewshot_eval.evaluate.tasks.definitions import parse_task_def

    path = Path(conf_dir()) / "task_def" / "wiki_demo.yaml"
    node = {**yaml.safe_load(path.read_text()), **patch}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_task_def("wiki_demo", path, node)

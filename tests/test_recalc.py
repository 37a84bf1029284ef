"""recalc_metrics: stored rows -> metrics under other scoring/calibration, no model, exact."""

from __future__ import annotations

import json

import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.rescoring import recalc_metrics, rescore_rows

MODES = ("sum", "mean", "suffix", "unconditional-norm")
OPTS = {"pawsx_demo": ["sentence1:: | sentence2::"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same trial run once per scoring mode, raw and calibrated; rows round-tripped through JSON."""
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor
    from fewshot_eval.evaluate.backends.tiny_model import build_tiny_gpt2
    from fewshot_eval.evaluate.evaluator import FewShotEvaluator

    path = build_tiny_gpt2(tmp_path_factory.mktemp("cache") / "tiny")
    lm = CausalLMPredictor.from_settings({"name": "tiny", "weights": str(path)}, {"device": "cpu", "batch_size": 16})
    ev = FewShotEvaluator({"name": "tiny"}, {}, predictor=lm)
    out = {}
    for mode in MODES:
        for cal in (None, "average_option"):
            params = {"seed": 1, "scoring": mode, "n_eval_samples": 12, "languages": {"pawsx_demo": "de"}, "calibrator": cal, "calibration_options": OPTS}
            res = ev.run_trial(["pawsx_demo"], params, 2, 0)
            rows = json.loads(json.dumps(res.predictions["pawsx_demo.default.de"]))
            out[(mode, cal)] = (params, res.metrics["pawsx_demo.default.de"], rows)
    return out


def test_recalc_reproduces_every_run_exactly(runs):
    for (mode, cal), (params, metrics, rows) in runs.items():
        assert recalc_metrics(rows, params, "pawsx_demo") == metrics, (mode, cal)


def test_recalc_switches_mode_and_calibration_from_one_run(runs):
    """Rows of an unconditional-norm run (the one mode that stores unconditional log-probs) recalc to every setting."""
    _, _, calibrated_rows = runs[("unconditional-norm", "average_option")]
    for (mode, cal), (params, metrics, rows) in runs.items():
        assert recalc_metrics(calibrated_rows, params, "pawsx_demo") == metrics, (mode, cal)
        new = rescore_rows(calibrated_rows, params, "pawsx_demo")
        assert [r["pred"] for r in new] == [r["pred"] for r in rows]
        # other batch compositions (variants in the batch) change float rounding only
        assert [c["score"] for r in new for c in r["candidates"]] == pytest.approx([c["score"] for r in rows for c in r["candidates"]], abs=1e-4)
    assert len({json.dumps(m, sort_keys=True) for _, m, _ in runs.values()}) > 2  # the modes really differ


def test_recalc_errors(runs):
    _, _, raw_rows = runs[("sum", None)]
    with pytest.raises(ConfigError, match="no calibration variants"):
        recalc_metrics(raw_rows, {"scoring": "sum", "calibrator": "average_option"})
    _, _, cal_rows = runs[("sum", "average_option")]
    with pytest.raises(ConfigError, match=r"option\(s\) \['sentence1::'\] were not scored"):
        recalc_metrics(cal_rows, {"calibrator": "average_option", "calibration_options": {"pawsx_demo": ["sentence1::"]}}, "pawsx_demo")
    with pytest.raises(ConfigError, match="unknown mode"):
        recalc_metrics(raw_rows, {"scoring": "median"})
    # a sum run did not compute unconditional log-probs: the error says how to get them
    assert all(c["uncond_logprobs"] is None for r in raw_rows for c in r["candidates"])
    with pytest.raises(ConfigError, match="no unconditional log-probs stored.*Re-run the evaluation with scoring=unconditional-norm"):
        recalc_metrics(cal_rows, {"scoring": "unconditional-norm"})
    for mode in ("sum", "mean", "suffix", "char-norm"):  # the other modes recalc from sum rows
        recalc_metrics(cal_rows, {"scoring": mode, "calibrator": "average_option"})


def test_recalc_baseline_rows():
    from fewshot_eval.evaluate import build_evaluator

    params = {"seed": 0, "predictor": "random"}
    res = build_evaluator({"predictor": "random"}, params).run_trial(["copa_demo"], params, 0, 0)
    rows = res.predictions["copa_demo.default"]
    assert recalc_metrics(rows, params) == res.metrics["copa_demo.default"]
    assert recalc_metrics(rows, {"scoring": "mean"}) == res.metrics["copa_demo.default"]


def test_package_level_helpers(runs):
    from fewshot_eval.evaluate import preferred_metric
    from fewshot_eval.evaluate import recalc_metrics as public_recalc

    params, metrics, rows = runs[("mean", "average_option")]
    assert public_recalc(rows, params, "pawsx_demo") == metrics
    assert preferred_metric("nli_demo") == "macro_f1" and preferred_metric("copa_demo") == "accuracy"

"""Calibration average_option: option syntax, errors, arithmetic, and a real calibrated run."""

from __future__ import annotations

import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.predictor import Request
from fewshot_eval.evaluate.calibration import apply_option, calibrate, parse_option
from fewshot_eval.evaluate.metrics.label_metrics import accuracy, macro_f1


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor
    from fewshot_eval.evaluate.backends.tiny_model import build_tiny_gpt2
    from fewshot_eval.evaluate.evaluator import FewShotEvaluator

    path = build_tiny_gpt2(tmp_path_factory.mktemp("cache") / "tiny")
    lm = CausalLMPredictor.from_settings({"name": "tiny", "weights": str(path)}, {"device": "cpu", "batch_size": 8})
    return FewShotEvaluator({"name": "tiny"}, {}, predictor=lm)


def test_option_syntax():
    assert parse_option("sentence1:: | sentence2::") == [("sentence1", ""), ("sentence2", "")]
    assert parse_option("premise::N/A") == [("premise", "N/A")]
    with pytest.raises(ConfigError, match=r"part 'sentence1' is not 'field::value'"):
        parse_option("sentence1 | sentence2::", "pawsx_demo")
    doc = {"sentence1": "a", "sentence2": "b", "_id": "1"}
    assert apply_option(doc, [("sentence1", "")], "t", "sentence1::") == {"sentence1": "", "sentence2": "b", "_id": "1"}
    with pytest.raises(ConfigError, match=r"option 'question::' names field 'question', not in the data. Fields: sentence1, sentence2"):
        apply_option(doc, [("question", "")], "t", "question::")


def test_arithmetic_and_metrics():
    # per candidate: score minus the mean over the variants
    assert calibrate([-1.0, -2.0], [[-0.5, -3.0], [-1.5, -1.0]]) == [0.0, 0.0]
    assert calibrate([-1.0, -2.0], [[-3.0, -1.0]]) == [2.0, -1.0]
    assert calibrate([1.0], []) == [1.0]
    gold, pred = ["a", "a", "b", "c"], ["a", "b", "b", "b"]
    assert accuracy(gold, pred) == 50.0
    # F1: a = 2*1/(2*1+0+1) = 2/3, b = 2*1/(2*1+2+0) = 1/2, c = 0
    assert macro_f1(gold, pred) == pytest.approx(100 * (2 / 3 + 1 / 2 + 0) / 3)


def test_calibrated_run(evaluator):
    params = {
        "seed": 0, "scoring": "sum", "n_eval_samples": 6, "calibrator": "average_option",
        "calibration_options": {"pawsx_demo": ["sentence1:: | sentence2::", "sentence1::N/A"]},
        "languages": {"pawsx_demo": ["en"]},
    }
    res = evaluator.run_trial(["pawsx_demo"], params, 1, 0)
    m = res.metrics["pawsx_demo.default.en"]
    rows = res.predictions["pawsx_demo.default.en"]
    assert {"accuracy", "accuracy_raw", "macro_f1", "macro_f1_raw"} <= set(m)
    assert m["accuracy_raw"] == accuracy([r["gold"] for r in rows], [r["pred_raw"] for r in rows])
    assert m["accuracy"] == accuracy([r["gold"] for r in rows], [r["pred"] for r in rows])
    for row in rows:
        assert [v["option"] for v in row["calibration"]] == params["calibration_options"]["pawsx_demo"]
        for i, c in enumerate(row["candidates"]):
            mean_v = sum(v["candidates"][i]["score"] for v in row["calibration"]) / 2
            assert c["calibrated"] == pytest.approx(c["score"] - mean_v)
        assert row["pred"] == max(row["candidates"], key=lambda c: c["calibrated"])["label"]
    # the content-free variant is scored after the same demonstrations
    row = rows[0]
    lm = evaluator.predictor
    demos = row["prompt"].rsplit("\n\n", 1)[0]
    blank = row["calibration"][0]["candidates"][1]
    (expect,) = lm.loglikelihood([Request(demos + "\n\n, right? ", "Yes, ")])
    assert blank["logprobs"] == pytest.approx(expect.logprobs, abs=1e-5)


def test_calibration_errors(evaluator):
    base = {"seed": 0, "n_eval_samples": 2, "calibrator": "average_option", "languages": {"pawsx_demo": ["en"]}}
    with pytest.raises(ConfigError, match=r"names field 'premise', not in the data"):
        evaluator.run_trial(["pawsx_demo"], {**base, "calibration_options": {"pawsx_demo": ["premise::"]}}, 0, 0)
    with pytest.raises(ConfigError, match=r"needs calibration_options.pawsx_demo.*Tasks with options: copa_demo"):
        evaluator.run_trial(["pawsx_demo"], {**base, "calibration_options": {"copa_demo": ["premise::"]}}, 0, 0)

"""``fewshot-eval recalc``: another scoring/calibration from stored predictions equals a fresh run, and lands where that run would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_cli

SWEEP = ["-m", "model=tiny_gpt2", "task=copa_demo,pawsx_calib", "nshot=2", "num_trials=2", "n_eval_samples=6"]


def metrics_by_setting(root: Path) -> dict[tuple, dict]:
    out = {}
    for f in root.rglob("results.json"):
        r = json.loads(f.read_text())
        key = (r["task_setting"], r["nshot"], r["params"]["scoring"], r["params"]["calibrator"])
        out[key] = {sub: {m: v["mean"] for m, v in ms.items() if isinstance(v, dict)} for sub, ms in r["results"].items()}
    return out


@pytest.mark.slow
def test_recalc_matches_a_fresh_run_and_is_found_complete(workdir: Path) -> None:
    run_cli(SWEEP + ["output_dir=a"], workdir)
    out = run_cli(["recalc", "a", "--scoring", "mean"], workdir).stdout
    assert out.count("written:") == 2
    run_cli(["recalc", "a/pawsx", "--calibrator", "none"], workdir)
    fresh = run_cli(SWEEP + ["output_dir=b", "scoring=mean"], workdir).stdout
    assert "ran 2" in fresh
    run_cli(SWEEP + ["output_dir=b", "task=pawsx_calib", "calibrator=null"], workdir)
    a, b = metrics_by_setting(workdir / "a"), metrics_by_setting(workdir / "b")
    for key, metrics in b.items():
        assert key in a, key
        assert a[key].keys() == metrics.keys()
        for sub in metrics:
            assert a[key][sub] == pytest.approx(metrics[sub], abs=1e-9), (key, sub)
    # a sweep asking for the recalculated setting finds it done
    again = run_cli(SWEEP + ["output_dir=a", "scoring=mean"], workdir).stdout
    assert "Nothing to launch" in again and "2 skip: complete" in again

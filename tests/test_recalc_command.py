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
    run_cli([a for a in SWEEP if not a.startswith("task=")] + ["output_dir=b", "task=pawsx_calib", "calibrator=null"], workdir)
    a, b = metrics_by_setting(workdir / "a"), metrics_by_setting(workdir / "b")
    for key, metrics in b.items():
        assert key in a, key
        assert a[key].keys() == metrics.keys()
        for sub in metrics:
            assert a[key][sub] == pytest.approx(metrics[sub], abs=1e-9), (key, sub)
    # a sweep asking for the recalculated setting finds it done
    again = run_cli(SWEEP + ["output_dir=a", "scoring=mean"], workdir).stdout
    assert "Nothing to launch" in again and "2 skip: complete" in again


def _recorded_settings(node: object, found: list) -> list:
    """Every value of a ``scoring``/``calibrator`` key and every ``scoring=...``/``calibrator=...`` in a text, anywhere."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("scoring", "calibrator"):
                found.append(f"{k}={v}")
            _recorded_settings(v, found)
    elif isinstance(node, list):
        for v in node:
            _recorded_settings(v, found)
    elif isinstance(node, str):
        found += [w.rstrip(".,") for w in node.split() if w.startswith(("scoring=", "calibrator="))]
    return found


def _trial_info(result_dir: Path, trial: str = "trial0") -> dict:
    info = json.loads((result_dir / trial / "metrics.json").read_text())["info"]
    return {k: info[k] for k in ("scoring", "calibrator", "warnings")}


@pytest.mark.slow
def test_recalc_rewrites_every_record_of_the_scoring(workdir: Path) -> None:
    """After ``recalc --scoring char-norm`` no file of the new result records the old scoring: results.json,
    identity.json and every trial's metrics.json (its info's scoring and the warnings that name it) say
    char-norm, as a fresh run with scoring=char-norm writes them; recalc to sum drops those warnings."""
    common = ["nshot=2", "num_trials=2", "n_eval_samples=4", "scoring=mean"]
    run_cli(["-m", "model=tiny_gpt2", "task=copa_demo,qa_demo", *common, "output_dir=a"], workdir)
    run_cli(["-m", "model=random", "task=copa_demo", *common, "output_dir=a"], workdir)
    before = [_trial_info(f.parent) for f in (workdir / "a").rglob("results.json")]
    assert any("scoring=mean ignored." in w for i in before for w in i["warnings"])  # generated text, the baseline
    for target in ("char-norm", "sum"):
        out = run_cli(["recalc", "a", "--scoring", target], workdir).stdout
        assert out.count("written:") == 3, out
        fresh = [*common[:-1], f"scoring={target}", f"output_dir=fresh_{target}"]
        run_cli(["-m", "model=tiny_gpt2", "task=copa_demo,qa_demo", *fresh], workdir)
        run_cli(["-m", "model=random", "task=copa_demo", *fresh], workdir)
        for f in (workdir / f"fresh_{target}").rglob("results.json"):
            rel = f.parent.relative_to(workdir / f"fresh_{target}")
            recalced = workdir / "a" / rel
            assert (recalced / "results.json").is_file(), rel  # the same result dir as the fresh run
            for g in recalced.rglob("*"):
                if g.suffix in (".json", ".jsonl"):
                    data = [json.loads(line) for line in g.read_text().splitlines()] if g.suffix == ".jsonl" else json.loads(g.read_text())
                    assert set(_recorded_settings(data, [])) <= {f"scoring={target}", "calibrator=None"}, g
            for t in ("trial0", "trial1"):
                assert _trial_info(recalced, t) == _trial_info(f.parent, t), (rel, t)
                assert _trial_info(recalced, t)["scoring"] == target

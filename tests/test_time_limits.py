"""Run times from history (plan/estimates.py): a sweep's ETA and ``timeout_min=auto``, from the wall times
that earlier results of the same model setting recorded.

The histories are real result trees written by real (local) runs; the expected numbers are computed
here from what those runs recorded in their results.json (``wall_time_s``, ``timed_trials``) and the
documented formula. Planning with the SLURM launcher needs no cluster (a dry run).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from cli_helpers import run_cli

SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=auto"]


def recorded(results: Path, model: str, task: str = "copa_demo") -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(results.glob(f"*/{model}/{task}/*/results.json"))]


def expected_minutes(seconds: float, factor: float, floor: int, signal_delay_s: float = 120) -> int:
    """The documented formula: max(floor, ceil((max(estimate x factor, 60 s) + signal_delay_s + 60 s) / 60))."""
    return max(floor, math.ceil((max(seconds * factor, 60) + signal_delay_s + 60) / 60))


def plan_row(out: str, model: str, task: str, nshot: int) -> str:
    [row] = [ln for ln in out.splitlines() if re.match(rf"run\s+{model}\s+{task}\s+{nshot}\s", ln)]
    return row


def test_auto_time_limit_and_eta_come_from_the_wall_times_of_earlier_results(workdir: Path) -> None:
    run_cli(["-m", "model=random", "task=copa_demo", "nshot=2", "num_trials=2", "n_eval_samples=10"], workdir)
    [rec] = recorded(workdir / "results", "random")
    assert rec["timed_trials"] == [0, 1] and rec["wall_time_s"] > 0
    # 20 examples (n_eval_samples, another result) x 3 trials at the rate of the earlier 10 examples x 2 trials
    estimate = rec["wall_time_s"] / (10 * 2) * 20 * 3
    factor, floor = 5000.0, 1
    want = expected_minutes(estimate, factor, floor)
    assert want > 5  # the estimate decides, not the floor
    out = run_cli(["-m", "model=random", "task=copa_demo", "nshot=2", "num_trials=3", "n_eval_samples=20", *SLURM,
                   f"hydra.launcher.auto_timeout_factor={factor}", f"hydra.launcher.auto_timeout_floor_min={floor}", "dry_run=true"], workdir).stdout
    assert f" {want}m(auto) | max " in plan_row(out, "random", "copa_demo", 2), out
    assert f"timeout_min=auto: random: {want} min (its longest job ~" in out
    assert "from 1 earlier result of random (same task setting and nshot))" in out
    assert re.search(r"^ETA ~\S+ once running \(\S+ of job time for 1 job, from the wall times of earlier results\)$", out, re.M), out

    # the floor, and the default factor: a job of seconds gets the floor
    out = run_cli(["-m", "model=random", "task=copa_demo", "nshot=2", "num_trials=3", "n_eval_samples=20", *SLURM, "dry_run=true"], workdir).stdout
    assert " 15m(auto) | max " in plan_row(out, "random", "copa_demo", 2) and "at least 15 min" in out

    # a local sweep's start line shows the ETA too (no time limits there)
    proc = run_cli(["-m", "model=random", "task=copa_demo", "nshot=2", "num_trials=2", "n_eval_samples=12"], workdir)
    assert re.search(r"^fewshot-eval: ETA ~\S+ once running \(.* for 1 job, ", proc.stdout, re.M), proc.stdout
    assert "timeout_min=auto" not in proc.stdout


def test_without_history_auto_falls_back_to_the_settings_timeout_and_says_so(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "fresh.yaml").write_text("name: fresh\npredictor: random\nresources: {timeout_min: 30}\n")
    (conf / "model" / "fresh_auto.yaml").write_text("name: fresh_auto\npredictor: random\nresources: {timeout_min: auto}\n")
    (conf / "model" / "short.yaml").write_text("name: short\npredictor: random\nresources: {timeout_min: 3}\n")
    sel = ["-m", "--config-dir", str(conf), "task=copa_demo", "nshot=0"]
    out = run_cli([*sel, "model=fresh", *SLURM, "dry_run=true"], workdir).stdout
    assert " 30m(auto) | max " in plan_row(out, "fresh", "copa_demo", 0)
    assert "timeout_min=auto: fresh: 30 min (no earlier results of fresh: its timeout_min 30)" in out
    assert "ETA" not in out  # nothing to go by
    # the model setting asks for auto itself (no launcher value): 60 min without history
    out = run_cli([*sel, "model=fresh_auto", "hydra/launcher=submitit_slurm", "dry_run=true"], workdir).stdout
    assert " 60m(auto) | max " in plan_row(out, "fresh_auto", "copa_demo", 0) and "its timeout_min 60" in out
    # the time limit auto gives is checked at planning like any other (settings.time_limit_problem)
    bad = run_cli([*sel, "model=short", *SLURM, "dry_run=true"], workdir, check=False)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "timeout_min=auto gave 3 min: timeout_min=3 leaves no work time" in bad.stderr


def test_combined_jobs_get_the_sum_and_bad_values_are_refused(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "comb.yaml").write_text("name: comb\npredictor: random\njob: {combine_tasks: true}\nresources: {timeout_min: auto}\n")
    (conf / "model" / "typo.yaml").write_text("name: typo\npredictor: random\nresources: {timeout_min: soon}\n")
    sel = ["-m", "--config-dir", str(conf), "model=comb", "task=copa_demo,nli_demo"]
    run_cli([*sel, "nshot=0", "n_eval_samples=8"], workdir)  # history: locally, one job per task setting
    recs = {t: recorded(workdir / "results", "comb", t)[0] for t in ("copa_demo", "nli_demo")}
    # on SLURM the pool is ONE job running both: its limit covers the sum (same task setting and nshot, 16 examples)
    total = sum(r["wall_time_s"] / (8 * len(r["timed_trials"])) * 16 for r in recs.values())
    factor = 20000.0
    want = expected_minutes(total, factor, 1)
    out = run_cli([*sel, "nshot=0", "n_eval_samples=16", "hydra/launcher=submitit_slurm", f"hydra.launcher.auto_timeout_factor={factor}",
                   "hydra.launcher.auto_timeout_floor_min=1", "dry_run=true"], workdir).stdout
    assert f"timeout_min=auto: comb: {want} min (all its jobs ~" in out, out
    assert all(f" {want}m(auto) | max " in plan_row(out, "comb", t, 0) for t in recs)

    bad = run_cli(["-m", "--config-dir", str(conf), "model=typo", "task=copa_demo", "nshot=0", "dry_run=true"], workdir, check=False)
    assert bad.returncode == 2 and "model/typo.yaml: resources.timeout_min must be a number of minutes or 'auto'" in bad.stderr, bad.stderr


def test_auto_limit_always_passes_the_planning_rule() -> None:
    from fewshot_eval.plan.estimates import auto_limit, fmt_duration, makespan
    from fewshot_eval.settings import time_limit_problem

    for seconds in (0.0, 1.0, 59.0, 3600.0):
        for delay in (0, 120, 600):
            assert time_limit_problem(auto_limit(seconds, 2.0, 1, delay), delay) is None
    assert auto_limit(3600, 2.0, 15, 120) == math.ceil((7200 + 180) / 60)
    assert makespan([10, 10, 10, 10], 2) == 20 and makespan([30, 5, 5], 4) == 30 and makespan([1, 2, 3], 1) == 6
    assert [fmt_duration(s) for s in (42, 720, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == ["42s", "12m", "3h05m", "2d04h"]

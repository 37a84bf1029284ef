"""User mistakes are rejected at planning -- one line, exit status 2, no traceback, nothing launched --
instead of being silently accepted (issue 8)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.config import ConfigError
from fewshot_eval.api import plan
from fewshot_eval.plan.checks import check_result_layout, check_same_result, check_slurm_client
from fewshot_eval.settings import check_setting_name

BASE = ["-m", "model=random", "task=copa_demo"]
DRY = BASE + ["dry_run=true"]


def rejected(proc: subprocess.CompletedProcess, workdir: Path, *fragments: str) -> str:
    """Exit 2, exactly one 'fewshot-eval: error:' line containing ``fragments``, no traceback, nothing launched."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out and "HYDRA_FULL_ERROR" not in out, out[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fewshot-eval: error:")]
    assert len(errors) == 1, proc.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    assert not list(workdir.rglob("scheduled_jobs.jsonl")) and not list(workdir.rglob("results.json")), "nothing may launch"
    assert not (workdir / "results").exists(), "planning fails before the output dir is touched"
    return errors[0]


# ---- 1. unknown top-level keys ----------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        BASE + ["+nshots=2"],  # not a dry run: still nothing launches
        DRY + ["+nshots=0,2"],  # a swept unknown key
        DRY + ["nshots=0,2"],  # without '+' (Hydra's own hint would suggest adding one)
    ],
)
def test_unknown_top_level_key_is_rejected_with_a_suggestion(workdir: Path, args: list[str]) -> None:
    line = rejected(run_cli(args, workdir, check=False), workdir, "unknown key 'nshots'", "did you mean 'nshot'?", "Valid top-level keys: output_dir, nshot,")
    assert "nshots=" in line  # names the override


def test_unknown_key_in_an_experiment_names_the_file(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "bad.yaml").write_text("# @package _global_\nnum_trails: 5\nhydra:\n  sweeper:\n    params:\n      model: random\n")
    (conf / "experiment" / "bad_sweep.yaml").write_text("# @package _global_\nhydra:\n  sweeper:\n    params:\n      model: random\n      seeds: 0,1\n")
    proc = run_cli(["-m", f"--config-dir={conf}", "experiment=bad", "dry_run=true"], workdir, check=False)
    rejected(proc, workdir, "experiment/bad.yaml: unknown key 'num_trails'", "did you mean 'num_trials'?")
    proc = run_cli(["-m", f"--config-dir={conf}", "experiment=bad_sweep", "dry_run=true"], workdir, check=False)
    rejected(proc, workdir, "experiment=bad_sweep (hydra.sweeper.params): unknown key 'seeds'", "did you mean 'seed'?")


def test_unknown_key_in_a_single_run_is_an_error_too(workdir: Path) -> None:
    proc = run_cli(["model=random", "task=copa_demo", "+nshots=2"], workdir, check=False)
    assert proc.returncode != 0 and "unknown key 'nshots' (did you mean 'nshot'?)" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(workdir.rglob("results.json"))


# ---- 2. values --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, fragment",
    [
        ("output_dir=", "output_dir is empty"),
        ("output_dir=''", "output_dir is empty"),
        ("max_parallel=0", "max_parallel must be an integer >= 1"),
        ("n_eval_samples=-1", "n_eval_samples must be an integer >= 0 (0 = all examples), got -1"),
        ("batch_size=0", "batch_size must be an integer >= 1, got 0"),
        ("seed=abc", "seed must be an integer, got 'abc'"),
        ("num_trials=0", "num_trials must be an integer >= 1, got 0"),
    ],
)
def test_bad_run_values_are_rejected(workdir: Path, override: str, fragment: str) -> None:
    rejected(run_cli(DRY + [override], workdir, check=False), workdir, fragment)


def test_bad_values_from_settings_are_rejected_at_planning(tmp_path: Path, user_conf: Path) -> None:
    (user_conf / "model" / "bad_bs.yaml").write_text("name: bad_bs\npredictor: random\neval: {batch_size: 0}\n")
    with pytest.raises(ConfigError, match=r"batch_size must be an integer >= 1, got 0"):
        plan(["model=bad_bs", f"output_dir={tmp_path}"], config_dirs=[user_conf])
    with pytest.raises(ConfigError, match=r"batch_size must be an integer >= 1, got 'x'"):
        plan(["model=random", "batch_size=x", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"seed must be an integer, got 1.5"):
        plan(["model=random", "seed=1.5", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"keep_score_cache must be true or false, got 'no'"):
        plan(["model=random", "keep_score_cache=no", f"output_dir={tmp_path}"])


# ---- 3. names that become directories ----------------------------------------------------------
@pytest.mark.parametrize(
    "override, fragment",
    [
        ("task.run_name=../up", "task/copa_demo.yaml: run_name '../up' is used as a directory name"),
        ("model.name=.hidden", "model/random.yaml: name '.hidden' is used as a directory name"),
    ],
)
def test_setting_names_that_escape_or_hide_a_directory_are_rejected(workdir: Path, override: str, fragment: str) -> None:
    rejected(run_cli(DRY + [override], workdir, check=False), workdir, fragment, "without '/', '\\' or '..'")


def test_setting_name_rule(tmp_path: Path) -> None:
    for ok in ("demo", "a.b", "x-1_2"):
        check_setting_name(ok, "run_name", "task/t.yaml")
    for bad in ("", "..", "../x", "a/b", "a\\b", ".x", "a..b", None):
        with pytest.raises(ConfigError, match="is used as a directory name"):
            check_setting_name(bad, "run_name", "task/t.yaml")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / ".m.yaml").write_text("name: m\npredictor: random\n")
    with pytest.raises(ConfigError, match=r"model/\.m\.yaml: model '\.m'"):
        plan(["model=.m", f"output_dir={tmp_path}"], config_dirs=[tmp_path])


# ---- 4. swept values that cannot change the result ---------------------------------------------
def test_sweeping_a_key_outside_the_identity_is_an_error_not_a_dropped_job(workdir: Path) -> None:
    line = rejected(run_cli(DRY + ["model.name=a,b"], workdir, check=False), workdir, "model.name=a,b: these values give the same result")
    assert "not part of a result's identity" in line
    rejected(run_cli(DRY + ["nshot=0,2", "batch_size=4,8"], workdir, check=False), workdir, "batch_size=4,8: these values give the same result")


def test_combos_that_differ_only_in_nshot_may_share_a_result() -> None:
    d = Path("/r/demo/random/copa_demo/64shot.abcdef12")
    check_same_result(["model=random", "nshot=64"], ["model=random", "nshot=128"], d)  # pool size caps both: fine
    with pytest.raises(ConfigError, match=r"device=cpu,cuda: these values give the same result"):
        check_same_result(["nshot=2", "device=cpu"], ["nshot=2", "device=cuda"], d)


# ---- 5. recalc and report ----------------------------------------------------------------------
def test_recalc_and_report_reject_what_is_not_a_result_in_one_line(workdir: Path) -> None:
    run_cli(BASE + ["nshot=0"], workdir)
    [res] = list((workdir / "results").rglob("results.json"))
    elsewhere = workdir / "copied" / res.parent.name
    shutil.copytree(res.parent, elsewhere)
    (workdir / "empty").mkdir()
    foreign = workdir / "foreign"
    foreign.mkdir()
    (foreign / "results.json").write_text(json.dumps({"accuracy": 1}))
    cases = [
        (["recalc", "empty", "--scoring", "mean"], "no results under empty"),
        (["recalc", str(workdir / "nowhere"), "--scoring", "mean"], "nowhere: no such file or directory"),
        (["recalc", "copied", "--scoring", "mean"], "is not in fewshot-eval's result layout"),
        (["recalc", "foreign", "--scoring", "mean"], "is not a fewshot-eval result"),
        (["report", str(workdir / "reslts")], "reslts: no such file or directory"),
        (["report", f"{workdir}/*/nothing*"], "no match as a glob pattern"),
    ]
    for args, fragment in cases:
        proc = run_cli(args, workdir, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr)
        [line] = [x for x in proc.stderr.splitlines() if x.strip()]
        assert line.startswith("fewshot-eval: error:") and fragment in line, (args, line)
        if args[0] == "recalc":
            assert "<output_dir>/<run_name>/<model>/<task setting>/<nshot>shot.<id>" in line or "no such file" in line
    assert len(list(workdir.rglob("results.json"))) == 3, "recalc wrote nothing"
    out = run_cli(["report", f"{workdir}/results/*/random"], workdir).stdout  # an absolute glob works
    assert "1 results from" in out


# ---- 6. SLURM's client commands ----------------------------------------------------------------
def test_slurm_launcher_without_sbatch_fails_at_planning_and_dry_run_warns(workdir: Path) -> None:
    env = {"PATH": os.path.dirname(sys.executable)}
    args = BASE + ["hydra/launcher=submitit_slurm"]
    rejected(run_cli(args, workdir, check=False, env=env), workdir, "sbatch not found: hydra/launcher=submitit_slurm needs SLURM's client commands on PATH", "hydra/launcher=local")
    assert not (workdir / "results").exists()
    proc = run_cli(args + ["dry_run=true"], workdir, env=env)
    assert proc.stderr.count("fewshot-eval: warning: sbatch not found") == 1 and "Dry run: 1 job planned" in proc.stdout


def test_slurm_check_changes_nothing_when_sbatch_exists() -> None:
    assert check_slurm_client("submitit_slurm", "", False, which=lambda _: "/usr/bin/sbatch") is None
    assert check_slurm_client("local", "", False, which=lambda _: None) is None
    assert "dry run" in (check_slurm_client("submitit_slurm", "", True, which=lambda _: None) or "")
    with pytest.raises(ConfigError, match="sbatch not found"):
        check_slurm_client(None, "hydra_plugins.fewshot_eval_plugins.slurm_launcher.SlurmPoolLauncher", False, which=lambda _: None)


# ---- 7. warnings once per sweep ----------------------------------------------------------------
def test_a_baseline_warning_is_printed_once_per_sweep_not_per_trial(workdir: Path) -> None:
    proc = run_cli(["-m", "models=baselines", "task=copa_demo,nli_demo", "nshot=0,2", "scoring=mean"], workdir)
    out = proc.stdout + proc.stderr
    text = "predictor 'random' is a baseline: scoring=mean ignored"
    assert 1 <= out.count(text) <= 2, out[-3000:]  # once at planning (+ once by the process that ran the trials)
    assert "fewshot-eval: warning: " + text in proc.stderr
    metrics = next(p for p in (workdir / "results").rglob("metrics.json") if "/random/" in str(p))
    assert any(text in w for w in json.loads(metrics.read_text())["info"]["warnings"]), "each trial still records it"


def test_result_layout_check() -> None:
    res = {"run_name": "demo", "model": "random", "task_setting": "copa_demo", "nshot": 2, "tasks": [], "trials": [0], "params": {}, "fingerprint": "f"}
    check_result_layout(Path("/o/demo/random/copa_demo/2shot.0a1b2c3d"), res)
    for bad in (Path("/o/demo/random/other/2shot.0a1b2c3d"), Path("/o/demo/random/copa_demo/0shot.0a1b2c3d"), Path("/x/2shot.0a1b2c3d")):
        with pytest.raises(ConfigError, match="result layout"):
            check_result_layout(bad, res)

"""The command line as a user meets it: help, dry run, errors, start-up without torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli


def test_help_lists_groups_and_examples(workdir: Path) -> None:
    out = run_cli(["--help"], workdir).stdout
    assert "fewshot-eval -m experiment=demo" in out
    assert "model: " in out and "random" in out and "tiny_gpt2" in out
    assert "models: " in out and "dense_vs_moe_lang16" in out


def test_planning_and_help_do_not_import_torch(workdir: Path) -> None:
    code = (
        "import runpy, sys\n"
        "sys.argv = ['fewshot_eval'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('fewshot_eval', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))\n"
    )
    for args in (["--help"], ["-m", "models=demo", "tasks=demo", "nshot=0,2", "dry_run=true"]):
        out = subprocess.run([sys.executable, "-c", code, *args], cwd=workdir, capture_output=True, text=True, check=True).stdout
        assert "HEAVY []" in out, (args, out[-500:])


def test_dry_run_lists_the_plan_and_launches_nothing(workdir: Path) -> None:
    out = run_cli(["-m", "models=demo", "tasks=demo", "nshot=0,2", "dry_run=true"], workdir).stdout
    rows = [line for line in out.splitlines() if line.startswith("run ")]
    assert len(rows) == 18
    assert "tiny_gpt2" in out and "pawsx/majority/pawsx_default/2shot." in out
    assert "Dry run: 18 jobs planned" in out and "Nothing launched" in out
    results = workdir / "results"
    assert not results.exists() or [p.name for p in results.iterdir()] == [], "a dry run must not write results or logs"


def test_unknown_model_fails_with_the_choices(workdir: Path) -> None:
    proc = run_cli(["-m", "model=random,gpt5", "dry_run=true"], workdir, check=False)
    assert proc.returncode != 0
    assert "Unknown model 'gpt5' (did you mean 'gpt2'?). Available:" in proc.stderr and "tiny_gpt2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_group_option_in_a_single_run_fails_with_choices(workdir: Path) -> None:
    proc = run_cli(["models=nope"], workdir, check=False)
    assert proc.returncode != 0 and "nope" in proc.stderr and "dense_vs_moe_lang16" in proc.stderr


def test_preset_without_multirun_is_an_error_not_one_default_job(workdir: Path) -> None:
    proc = run_cli(["models=baselines"], workdir, check=False)
    assert proc.returncode != 0
    assert "add -m" in proc.stderr and "fewshot-eval -m models=baselines" in proc.stderr
    assert not (workdir / "results" / "demo").exists()


def test_unwritable_output_dir_is_a_clear_error(workdir: Path, request: pytest.FixtureRequest) -> None:
    """As a user who may not write there: this user, or -- as root, who can write anywhere (CI) -- a second
    user created for the test (tests/second_user.py)."""
    if os.geteuid() != 0:
        ro = workdir / "ro"
        ro.mkdir(mode=0o500)
        proc = run_cli(["-m", "model=random", f"output_dir={ro}/x"], workdir, check=False)
    else:
        from second_user import home_of, run_as

        user = request.getfixturevalue("other_user")
        request.getfixturevalue("traversable")
        shared = request.getfixturevalue("shared_dir")
        ro = shared / "ro"
        ro.mkdir(mode=0o500)
        shutil.chown(ro, user=user)  # theirs, and not writable even by them
        proc = run_as(user, ["-m", "fewshot_eval", "-m", "model=random", f"output_dir={ro}/x"], shared, home_of(user, shared))
        assert not (ro / "x").exists()
    assert proc.returncode != 0 and "cannot be created or written" in proc.stderr, proc.stderr[-3000:]
    assert f"{ro}/x" in proc.stderr and "Traceback" not in proc.stderr


def test_output_dir_under_a_file_is_a_clear_error(workdir: Path) -> None:
    (workdir / "afile").write_text("x")
    proc = run_cli(["-m", "model=random", "output_dir=afile/results"], workdir, check=False)
    assert proc.returncode != 0
    assert "output_dir" in proc.stderr and "cannot be created or written" in proc.stderr and "Traceback" not in proc.stderr


def test_list_experiments_shows_description_and_command(workdir: Path) -> None:
    out = run_cli(["list", "experiments"], workdir).stdout
    assert "demo\n" in out and "$ fewshot-eval -m experiment=multilingual" in out


def test_cfg_job_shows_the_composed_config(workdir: Path) -> None:
    out = run_cli(["--cfg", "job", "model=tiny_gpt2", "scoring=mean"], workdir).stdout
    assert "weights: tiny-gpt2" in out and "scoring: mean" in out

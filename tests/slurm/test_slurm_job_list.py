"""The missing-results list on the real test cluster: a job SLURM cancelled is listed by ``status
--missing``, and the command it prints resubmits exactly that job."""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli

pytestmark = pytest.mark.slurm

SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug"]
GRID = ["model=random,majority", "task=copa_demo", "nshot=0"]


def test_status_lists_the_cancelled_job_and_its_command_resubmits_only_it(slurm_cluster, workdir):
    run_cli(["-m", *GRID, *SLURM, "+hydra.launcher.additional_parameters.hold=true"], workdir, timeout=240)
    marks = {m["pool"]: m for m in (json.loads(p.read_text()) for p in (workdir / "results").rglob("submitted.json"))}
    slurm_cluster.track(*(m["job_id"] for m in marks.values()))
    subprocess.run(["scancel", marks["random"]["job_id"]], check=True)
    subprocess.run(["scontrol", "release", marks["majority"]["job_id"]], check=True)
    slurm_cluster.wait_for_state(marks["random"]["job_id"], "CANCELLED", timeout=30)
    slurm_cluster.wait_for_state(marks["majority"]["job_id"], "COMPLETED", timeout=60)

    out = run_cli(["status", "-m", *GRID, *SLURM, "--missing", "missing.csv"], workdir).stdout
    with (workdir / "missing.csv").open(newline="") as f:
        [row] = list(csv.DictReader(f))
    assert row["model"] == "random" and row["state"] == "missing"
    command = out.strip().splitlines()[-1].split("Run them: ", 1)[1]
    assert command == "fewshot-eval -m job_list=missing.csv hydra/launcher=submitit_slurm hydra.launcher.partition=debug"
    args = shlex.split(command)[1:] + ["hydra.launcher.wait=true"]
    ran = subprocess.run([sys.executable, "-m", "fewshot_eval", *args], cwd=workdir, capture_output=True, text=True, timeout=240)
    assert ran.returncode == 0 and "submitted 1 job to SLURM in 1 pool" in ran.stdout and "ran 1, skipped 0, failed 0" in ran.stdout, ran.stdout + ran.stderr
    done = {p.parent for p in (workdir / "results").rglob("results.json")}
    assert Path(row["result_dir"]) in done and len(done) == 2

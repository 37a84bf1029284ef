"""Faults found by killing and racing sweeps: each test reproduces one (it failed before the fix)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.store.locks import ResultBusy, move_aside, writing


def only_result(workdir: Path) -> Path:
    [res] = (workdir / "results").rglob("results.json")
    return res.parent


def test_split_trials_killed_before_aggregation_are_aggregated_by_the_next_sweep(workdir: Path) -> None:
    """A kill between the last trial's metrics.json and results.json used to leave every trial job
    'skip: complete' forever, and the result never reached the report."""
    args = ["-m", "model=random", "task=copa_demo", "nshot=2", "num_trials=2", "split_trials=true"]
    run_cli(args, workdir)
    rdir = only_result(workdir)
    before = json.loads((rdir / "results.json").read_text())["results"]
    (rdir / "results.json").unlink()  # the state a kill at that moment leaves
    dry = run_cli(args + ["dry_run=true"], workdir).stdout
    assert "aggregate: every trial is done, results.json is missing" in dry, dry
    out = run_cli(args, workdir).stdout
    assert "ran 1, skipped 1" in out
    assert json.loads((rdir / "results.json").read_text())["results"] == before


def test_a_result_being_written_is_never_moved_aside(workdir: Path) -> None:
    """override_completed next to a running job used to move the dir away under the writer, which then
    recreated it with a results.json and no trial files."""
    args = ["-m", "model=random", "task=copa_demo", "nshot=0"]
    run_cli(args, workdir)
    rdir = only_result(workdir)
    with writing(rdir):  # a job of another sweep is writing into it
        with pytest.raises(ResultBusy):
            move_aside(rdir)
        proc = run_cli(args + ["override_completed=true"], workdir, check=False)
    assert proc.returncode == 3 and "running elsewhere 1" in proc.stdout, proc.stdout + proc.stderr
    assert not list(rdir.parent.glob(rdir.name + ".old-*")) and (rdir / "results.json").exists()
    moved = move_aside(rdir)  # once the writer is gone it moves, and a new run starts afresh
    assert moved is not None and (moved / "results.json").exists() and not rdir.exists()


def test_a_leftover_slurm_marker_does_not_block_a_local_sweep_when_slurm_is_unreachable(workdir: Path, tmp_path: Path) -> None:
    args = ["-m", "model=random", "task=copa_demo", "nshot=0"]
    dry = run_cli(args + ["dry_run=true"], workdir).stdout
    [rdir] = {ln.split()[5] for ln in dry.splitlines() if ln.startswith("run ")}
    rdir = workdir / "results" / rdir
    rdir.mkdir(parents=True)
    (rdir / "submitted.json").write_text(json.dumps({"job_id": "12_3", "trials": [0], "stdout": "/logs/12_3_0_log.out"}))
    bin_dir = tmp_path / "bin"  # a PATH with python but without squeue/sacct: SLURM cannot be asked
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python")
    env = {"PATH": str(bin_dir)}
    dry = run_cli(args + ["dry_run=true"], workdir, env=env).stdout
    assert "ignoring submitted.json of SLURM job 12_3: SLURM cannot be reached" in dry, dry
    out = run_cli(args, workdir, env=env).stdout
    assert "ran 1" in out and (rdir / "results.json").exists()


def test_a_job_refuses_to_write_another_result_than_planned(workdir: Path) -> None:
    proc = run_cli(["model=random", "task=copa_demo", "nshot=0", "planned_id=0123456789abcdef"], workdir, check=False)
    assert proc.returncode != 0 and "but the sweep planned 0123456789abcdef" in proc.stderr, proc.stderr
    assert not list((workdir / "results").rglob("trial0"))


@pytest.mark.parametrize("digest", ["1234e56789012345", "1234567890123456", "0e12345678901234", "0123456789abcdef"])
def test_a_planned_id_that_reads_as_a_number_reaches_the_job_as_planned(tmp_path: Path, digest: str) -> None:
    """A result id whose first 16 hex digits Hydra would read as a float (1234e5...: inf) or an int is passed so
    that the job gets it as the string planned: its type check and the planned-result check accept it."""
    import dataclasses

    from hydra.core.hydra_config import HydraConfig

    from fewshot_eval.api import plan
    from fewshot_eval.launch.dispatch import planned_id
    from fewshot_eval.run.job import check_planned, unit_from_config

    planner, [job] = plan(["model=random", "task=copa_demo", "nshot=0", f"output_dir={tmp_path}"])
    job = dataclasses.replace(job, unit=dataclasses.replace(job.unit, id_digest=digest + "0" * 48))
    cfg = planner.job_config([*job.overrides, *planned_id(job)])
    assert cfg.planned_id == digest
    hc = HydraConfig.instance()
    old = hc.cfg
    try:
        hc.set_config(cfg)
        unit_from_config(cfg)  # the job's own checks: planned_id must be a string
    finally:
        hc.cfg = old
    check_planned(cfg, job.unit)


def test_the_fault_hook_kills_on_the_nth_pass_of_its_point_only() -> None:
    """FEWSHOT_FAULT=kill-<point>:<n> (fewshot_eval/faults.py), which the kill tests use instead of racing a timer."""
    import signal
    import subprocess

    from fewshot_eval.faults import FAULT_ENV

    code = ("from fewshot_eval.faults import fault_point\n"
            "for i in range(1, 5):\n    fault_point('after-trial'); fault_point('after-commit'); print(i, flush=True)\n")
    for spec, rc, printed in (("kill-after-trial:3", -signal.SIGKILL, "1\n2\n"), ("kill-after-commit", -signal.SIGKILL, ""),
                              ("kill-after-sbatch", 0, "1\n2\n3\n4\n"), ("", 0, "1\n2\n3\n4\n")):
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, FAULT_ENV: spec})
        assert (p.returncode, p.stdout) == (rc, printed), (spec, p.stderr)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, FAULT_ENV: "kill-after-trial:x"})
    assert p.returncode == 1 and "the pass count after ':' must be an integer" in p.stderr


# ------------------------------------------------------------------------------- a full disk
@pytest.mark.parametrize("launcher", ["local", "local_parallel"])
def test_a_disk_filling_up_gives_one_line_per_job_and_no_traceback(workdir: Path, launcher: str) -> None:
    """Hydra's job log used to print '--- Logging error ---' tracebacks; appending to scheduled_jobs.jsonl raised
    an uncaught OSError. The disk fills up as each job starts (FEWSHOT_FAULT=full-job-start: every write of the job
    fails), and scheduled_jobs.jsonl is /dev/full (ENOSPC)."""
    (workdir / "results").mkdir()
    os.symlink("/dev/full", workdir / "results" / "scheduled_jobs.jsonl")
    proc = run_cli(["-m", "model=random", "task=copa_demo,nli_demo", "nshot=0", f"hydra/launcher={launcher}"], workdir, check=False,
                   # a plain subprocess: its stdout a pipe (the fork server's are files, which the simulated full disk stops too)
                   env={"FEWSHOT_FAULT": "full-job-start", "FEWSHOT_TEST_FRESH_PROCESS": "1"})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in text and "Logging error" not in text, text[-3000:]
    assert "ran 0, skipped 0, failed 2." in proc.stdout
    per_job = [ln for ln in text.splitlines() if "File too large" in ln or "a full disk?" in ln]
    assert len([ln for ln in per_job if not ln.startswith("  FAILED ")]) == 2, text  # one line per job (then the summary's)
    assert text.count("cannot append to") == 1 and "No space left on device" in text
    assert not list((workdir / "results").rglob("results.json")) and not list((workdir / "results").rglob("*.tmp"))


def test_a_full_disk_stops_a_sweep_before_launch_with_one_line(workdir: Path, monkeypatch) -> None:
    """The probe of the output dir created an empty file, which a full disk allows: the sweep then died with an
    OSError traceback writing multirun.yaml; the dry run said the output dir 'is writable'."""
    import resource
    import signal
    import subprocess

    from fewshot_eval.config import ConfigError
    from fewshot_eval.store import writable

    def full() -> None:  # every write of the sweep fails (EFBIG), as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = subprocess.run([sys.executable, "-m", "fewshot_eval", "-m", "model=random", "task=copa_demo", "nshot=0"], cwd=workdir,
                          capture_output=True, text=True, preexec_fn=full, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr[-3000:]
    assert "cannot be created or written (File too large)" in proc.stderr
    monkeypatch.setattr(writable.os, "statvfs", lambda p: os.statvfs_result((4096, 4096, 100, 0, 0, 10, 0, 0, 0, 255)))
    with pytest.raises(ConfigError, match="is on a full filesystem"):
        writable.check_writable(workdir / "results", probe=False)  # what a dry run asks: nothing is written

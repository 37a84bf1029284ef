"""Faults of SLURM sweeps at scale, on the real test cluster (issue 19): each test failed before the fix.

* a sweep killed right after sbatch (by an ``sbatch`` stand-in on PATH) leaves jobs that start and complete;
* identical sweeps started together never submit a job twice, even when one's jobs finish while
  another waits for the submission lock;
* ``max_parallel`` holds for a model as a whole when its pool is split into several arrays;
* with the controller down a sweep says so in one line, in seconds, submits nothing, counts no failure;
* dry runs, ``status`` and ``report`` write nothing, even with interrupted submissions and failed jobs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from cli_helpers import run_cli

pytestmark = pytest.mark.slurm

HOLD = "+hydra.launcher.additional_parameters.hold=true"


def model(conf: Path, name: str, predictor: str = "random", max_parallel: int = 4, extra: str = "") -> None:
    (conf / "model").mkdir(parents=True, exist_ok=True)
    (conf / "model" / f"{name}.yaml").write_text(
        f"name: {name}\npredictor: {predictor}\nmax_parallel: {max_parallel}\nresources: {{cpus_per_task: 1, timeout_min: 6}}\n{extra}")


def slurm_args(conf: Path, *args: str) -> list[str]:
    return ["-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", *args]


def launched(workdir: Path) -> list[dict]:
    log = workdir / "results" / "scheduled_jobs.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def our_arrays(workdir: Path) -> set[str]:
    """Every array the sweeps under ``workdir`` submitted: the logged job ids, and the job names in their
    records and markers (a killed sweep logs nothing), asked of SLURM."""
    ids = {str(r["job_id"]).split("_")[0] for r in launched(workdir) if r.get("job_id")}
    names = set()
    for p in (workdir / "results").rglob("*.json"):
        if p.parent.name == ".slurm_submissions":
            names |= {a["job_name"] for a in json.loads(p.read_text())["arrays"]}
    for p in (workdir / "results").rglob("submitted.json"):
        m = json.loads(p.read_text())
        names |= {j.get("job_name") or m.get("job_name") for j in m.get("jobs") or [m]}
    names.discard(None)
    names.discard("")
    if not names:
        return ids
    out = subprocess.run(["sacct", "-n", "-X", "-P", "--name", ",".join(sorted(names)), "-S", "now-1days", "-o", "JobID"],
                         capture_output=True, text=True).stdout
    out += subprocess.run(["squeue", "-h", "-r", "--name", ",".join(sorted(names)), "-o", "%i"], capture_output=True, text=True).stdout
    return ids | {line.split("_")[0] for line in out.split() if line.strip()}


def task_rows(arrays: set[str]) -> dict[str, tuple[str, str, str]]:
    """sacct rows of every task of these arrays: job id -> (state, start, end)."""
    if not arrays:
        return {}
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(sorted(arrays)), "-o", "JobID,State,Start,End"],
                         capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        jid, state, start, end = line.split("|")
        m = re.fullmatch(r"(\d+)_\[([\d,-]+)(%\d+)?\]", jid)  # the pending rest of an array: 12_[3-7%2]
        for part in m.group(2).split(",") if m else [jid]:
            lo, _, hi = part.partition("-")
            for j in ([f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)] if m else [jid]):
                rows[j] = (state.split()[0], start, end)
    return rows


def results(workdir: Path) -> list[Path]:
    return sorted(p.parent for p in (workdir / "results").rglob("results.json"))


def cancel(cluster, workdir: Path) -> None:
    arrays = our_arrays(workdir)
    cluster.track(*arrays)
    if arrays:
        subprocess.run(["scancel", *sorted(arrays)], capture_output=True)


def wait_all_ended(cluster, workdir: Path, n: int, timeout: float) -> dict[str, tuple[str, str, str]]:
    """Wait until n tasks of the sweeps' arrays have ended; returns their sacct rows."""
    def ended():
        rows = task_rows(our_arrays(workdir))
        done = {j: r for j, r in rows.items() if r[0] not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING")}
        return rows if len(done) >= n and len(done) == len(rows) else None
    return cluster.wait_until(ended, timeout=timeout, poll=2, what=f"{n} SLURM tasks to end")


# ---- 3: a sweep killed right after sbatch leaves jobs that run -------------------------------------
SBATCH_KILLER = """#!/bin/bash
# sbatch stand-in: the real sbatch, then SIGKILL the sweep that called it when the job name names $KILL_POOL
out=$("{real}" "$@"); rc=$?
echo "$out"
if [ $rc -eq 0 ] && grep -q -- "--job-name=fewshot-$KILL_POOL-" "${{@: -1}}"; then kill -9 $PPID; fi
exit $rc
"""


@pytest.mark.parametrize("victim", ["kfirst", "kmiddle", "klast"])
def test_a_sweep_killed_right_after_sbatch_leaves_jobs_that_run(slurm_cluster, workdir, tmp_path, victim):
    """The sbatch stand-in runs the real sbatch, then SIGKILLs the sweep, once the first / a middle / the last
    pool's array is submitted. The next sweep adopts what was submitted and submits the rest; released, every
    job completes (its pickled call and log folder existed before sbatch), none twice, no failure recorded."""
    conf = tmp_path / "conf"
    for name in ("kfirst", "kmiddle", "klast"):
        model(conf, name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(SBATCH_KILLER.format(real=shutil.which("sbatch")))
    (bin_dir / "sbatch").chmod(0o755)
    grid = ["model=kfirst,kmiddle,klast", "task=copa_demo,nli_demo", "nshot=0,1", "n_eval_samples=4"]
    killed = run_cli(slurm_args(conf, *grid, HOLD), workdir, check=False, timeout=240,
                     env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "KILL_POOL": victim})
    try:
        assert killed.returncode in (-9, 137), killed.stdout + killed.stderr
        dry = run_cli(slurm_args(conf, *grid, "dry_run=true"), workdir).stdout
        assert dry.count("\nskip: pending ") >= 4, dry  # the victim's array (and any other in flight) is pending, not lost
        again = run_cli(slurm_args(conf, *grid, HOLD), workdir).stdout  # adopts what went out, submits the rest
        assert "submitted" in again or "Nothing to launch" in again
        arrays = our_arrays(workdir)
        slurm_cluster.track(*arrays)
        subprocess.run(["scontrol", "release", *sorted(arrays)], capture_output=True)
        rows = wait_all_ended(slurm_cluster, workdir, 12, timeout=240)
        assert len(rows) == 12 and {r[0] for r in rows.values()} == {"COMPLETED"}, rows  # 12 jobs, each submitted once
        assert len(results(workdir)) == 12
        assert not list((workdir / "results").rglob("failure.json"))
        last = run_cli(slurm_args(conf, *grid), workdir).stdout
        assert "12 skip: complete" in last, last
    finally:
        cancel(slurm_cluster, workdir)


# ---- 4: concurrent sweeps never submit a job twice -----------------------------------------------
@pytest.mark.parametrize("sweeps", [2, 3])
def test_identical_sweeps_started_together_submit_each_job_once(slurm_cluster, workdir, tmp_path, sweeps):
    """~400 jobs that really run (baseline predictors, not held); the sweeps start 0-0.5 s apart, so one's
    jobs finish while the others wait for the submission lock: each job is submitted exactly once."""
    conf = tmp_path / "conf"
    for k in range(4):
        model(conf, f"race{k}", predictor="random" if k % 2 else "majority", max_parallel=8)
    grid = ["model=race0,race1,race2,race3", "task=copa_demo,nli_demo,hellaswag_demo,pawsx_default", "nshot=1,2,4,8,16",
            "seed=0,1,2,3,4", "n_eval_samples=2", "num_trials=1"]
    cmd = [sys.executable, "-m", "fewshot_eval", *slurm_args(conf, *grid)]
    procs = []
    try:
        for _ in range(sweeps):
            procs.append(subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            time.sleep(0.25)
        outs = [p.communicate(timeout=400)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        rows = launched(workdir)
        planned = int(re.search(r"(\d+) jobs planned", outs[0]).group(1))
        assert planned >= 380, outs[0]
        dirs = [r["result_dir"] for r in rows]
        assert len(dirs) == len(set(dirs)) == planned, f"{len(dirs) - len(set(dirs))} jobs submitted twice\n" + "\n".join(outs)
        arrays = our_arrays(workdir)
        def listed():
            t = task_rows(arrays)
            return t if len(t) >= planned else None
        tasks = slurm_cluster.wait_until(listed, timeout=60, poll=2, what="accounting to list every task")  # SLURM's own count
        assert len(tasks) == planned, (len(tasks), planned)
        plan = run_cli(slurm_args(conf, *grid, "dry_run=true"), workdir).stdout
        assert not re.search(r"^run ", plan, re.M), plan[-3000:]  # every job is pending or complete
    finally:
        for p in procs:
            p.kill()
        cancel(slurm_cluster, workdir)


def test_a_sweep_waiting_for_the_lock_leaves_out_what_finished_meanwhile(slurm_cluster, workdir, tmp_path):
    """Deterministic: a sweep has planned and waits for the submission lock (held here); meanwhile the same
    results are computed (here by a local run: no SLURM markers left, as when another sweep's jobs finished
    and removed theirs). Under the lock it re-plans completeness and submits nothing."""
    from fewshot_eval.store.locks import locked

    conf = tmp_path / "conf"
    model(conf, "waiter")
    grid = ["model=waiter", "task=copa_demo,nli_demo", "nshot=0,1,2", "n_eval_samples=2", "num_trials=1"]
    root = workdir / "results"
    root.mkdir()
    with locked(root / ".slurm_submit.lock", wait=True):
        proc = subprocess.Popen([sys.executable, "-m", "fewshot_eval", *slurm_args(conf, *grid)], cwd=workdir,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            first = proc.stdout.readline()
            assert "6 jobs planned" in first and "6 run" in first, first
            time.sleep(1)  # it is waiting for the lock now
            run_cli(["-m", "--config-dir", str(conf), *grid], workdir)  # the results, complete on disk
        except BaseException:
            proc.kill()
            raise
    out = first + proc.communicate(timeout=120)[0]
    try:
        assert proc.returncode == 0, out
        assert "nothing submitted to SLURM:\n  6 jobs left out: completed meanwhile" in out, out
        assert not [r for r in launched(workdir) if r["launcher"] == "SlurmPoolLauncher"], out
    finally:
        cancel(slurm_cluster, workdir)


# ---- 5: max_parallel per model across split arrays -------------------------------------------------
def test_max_parallel_holds_for_a_model_whose_pool_is_split_into_several_arrays(slurm_cluster, workdir, tmp_path):
    """MaxArraySize 8: 17 split-trial jobs of one model go out as 3 arrays. With max_parallel=1 and =3 (two
    models side by side) the tasks' start/end times never overlap more than that."""
    conf = tmp_path / "conf"
    model(conf, "par1", max_parallel=1)
    model(conf, "par3", max_parallel=3)
    grid = ["model=par1,par3", "task=copa_demo", "nshot=1", "num_trials=17", "split_trials=true", "n_eval_samples=2"]
    out = run_cli(slurm_args(conf, *grid), workdir, timeout=240).stdout
    try:
        rows = wait_all_ended(slurm_cluster, workdir, 34, timeout=600)
        by_pool: dict[str, list[tuple[datetime, datetime]]] = {"par1": [], "par3": []}
        names = {r["job_id"]: r["pool"] for r in launched(workdir)}
        for jid, (state, start, end) in rows.items():
            assert state == "COMPLETED", (jid, state)
            by_pool[names[jid]].append((datetime.fromisoformat(start), datetime.fromisoformat(end)))
        for pool, limit in (("par1", 1), ("par3", 3)):
            spans = by_pool[pool]
            assert len(spans) == 17
            peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
            assert peak <= limit, (pool, peak, sorted(spans))
        assert len(results(workdir)) == 2
        assert "17 tasks in 3 arrays of at most 8 (MaxArraySize), at most 1 at once in all" in out, out
        assert "17 tasks in 3 arrays of at most 8 (MaxArraySize), at most 3 at once in all" in out, out
    finally:
        cancel(slurm_cluster, workdir)


# ---- 6: the controller down: fast and once ---------------------------------------------------------
def dead_cluster(cluster, tmp_path: Path) -> dict[str, str]:
    """SLURM_CONF for a copy of the test cluster's config whose controller and accounting ports are closed
    (the shared cluster itself is never stopped)."""
    dead = tmp_path / "dead"
    dead.mkdir()
    text = cluster.conf.read_text()
    text = re.sub(r"(?m)^SlurmctldPort=.*$", "SlurmctldPort=1", text)
    text = re.sub(r"(?m)^AccountingStoragePort=.*$", "AccountingStoragePort=2", text)
    (dead / "slurm.conf").write_text(text)
    (dead / "gres.conf").write_text((cluster.conf.parent / "gres.conf").read_text())
    return {"SLURM_CONF": str(dead / "slurm.conf")}


def test_with_the_controller_down_a_sweep_submits_nothing_and_says_so_once(slurm_cluster, workdir, tmp_path):
    conf = tmp_path / "conf"
    for name in ("down1", "down2", "down3"):
        model(conf, name)
    grid = ["model=down1,down2,down3", "task=copa_demo,nli_demo", "nshot=0,1"]
    env = dead_cluster(slurm_cluster, tmp_path)
    t0 = time.monotonic()
    proc = run_cli(slurm_args(conf, *grid), workdir, check=False, env=env, timeout=240)
    took = time.monotonic() - t0
    text = proc.stdout + proc.stderr
    assert proc.returncode == 4, text
    assert len([ln for ln in text.splitlines() if "cannot be reached" in ln]) == 1, text  # one line, not one per pool or tool
    assert "not submitted 12 (SLURM down)" in text and "failed 0" in text, text
    assert "NOT submitted" not in text and "sbatch: error" not in text, text
    assert took < 15, (took, text)
    tree = [p for p in (workdir / "results").rglob("*") if p.is_file()]
    assert not [p for p in tree if p.name in ("submitted.json", "failure.json") or p.parent.name == ".slurm_submissions"], tree
    # with a recorded submission the planner's squeue is the first to find the controller down: still once, in seconds
    dry = run_cli(slurm_args(conf, *grid, "dry_run=true"), workdir).stdout
    rdir = workdir / "results" / next(ln.split()[5] for ln in dry.splitlines() if ln.startswith("run "))
    rdir.mkdir(parents=True, exist_ok=True)
    (rdir / "submitted.json").write_text(json.dumps({"job_id": "99999_0", "trials": [0], "stdout": "/x_0_log.out"}))
    t0 = time.monotonic()
    proc = run_cli(slurm_args(conf, *grid), workdir, check=False, env=env, timeout=240)
    took = time.monotonic() - t0
    text = proc.stdout + proc.stderr
    assert proc.returncode == 4 and "1 skip: pending" in text and "not submitted 11" in text, text
    assert text.count("squeue cannot be reached") == 1 and text.count("SLURM cannot be reached (") == 1, text  # the plan's, the launcher's
    assert "scontrol" not in text and "sbatch" not in text, text  # the controller is not asked again
    assert took < 15, (took, text)
    print(f"controller down: the sweep ended in {took:.1f}s")


# ---- 7: read-only means read-only ------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if not p.is_dir() else 0, st.st_mtime_ns)
    st = root.lstat()
    out["."] = (0, st.st_mtime_ns)
    return out


def test_dry_runs_status_and_report_write_nothing(slurm_cluster, workdir, tmp_path):
    """A tree with an interrupted submission (the sweep killed right after sbatch) and a failed job:
    a dry run, ``status`` and ``report --sweep`` leave every path, size and mtime as it was; the next
    sweep that is not a dry run adopts the submission and records the failure."""
    conf = tmp_path / "conf"
    model(conf, "ro_ok")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")  # passes planning (JSON, a weight file), fails to load (no model_type)
    (tmp_path / "broken" / "model.safetensors").write_text("not safetensors")
    model(conf, "ro_broken", predictor="clm", extra=f"weights: {tmp_path / 'broken'}\n")
    ok = ["model=ro_ok", "task=copa_demo,nli_demo", "nshot=0"]
    broken = ["model=ro_broken", "task=copa_demo", "nshot=0"]
    run_cli(slurm_args(conf, *broken, "hydra.launcher.wait=true"), workdir, check=False, timeout=300)  # fails on the node
    killed = run_cli(slurm_args(conf, *ok, HOLD), workdir, check=False, timeout=240, env={"FEWSHOT_FAULT": "kill-after-sbatch"})
    try:
        assert killed.returncode in (-9, 137), killed.stdout + killed.stderr
        assert len(list((workdir / "results").rglob("submitted.json"))) == 1  # the failed job's
        for f in (workdir / "results").rglob("failure.json"):
            f.unlink()  # as if the job had died before it could record its failure (a node lost): only SLURM knows
        grid = ["model=ro_ok,ro_broken", "task=copa_demo,nli_demo", "nshot=0"]
        time.sleep(1.1)  # mtimes have a coarse grain on some filesystems
        before = snapshot(workdir / "results")
        changed = lambda: {k: (before.get(k), now.get(k)) for k in set(before) | set(now) if before.get(k) != now.get(k)}  # noqa: E731
        dry = run_cli(slurm_args(conf, *grid, "dry_run=true"), workdir).stdout
        now = snapshot(workdir / "results")
        assert now == before, ("dry run", changed())
        status = run_cli(["status", "--config-dir", str(conf), *grid, "hydra/launcher=submitit_slurm"], workdir, check=False)
        now = snapshot(workdir / "results")
        assert now == before, ("status", changed())
        report = run_cli(["report", "--sweep", f"--config-dir {conf} {' '.join(grid)} hydra/launcher=submitit_slurm"], workdir, check=False)
        now = snapshot(workdir / "results")
        assert now == before, ("report --sweep", changed())
        # what they showed: the interrupted submission pending, the failure counted (not written)
        assert "resubmit: SLURM job" in dry and "was FAILED" in dry and dry.count("\nskip: pending") == 2 and "retry: failed 1×" in dry, dry
        assert "jobs planned" in status.stdout, status.stdout + status.stderr
        assert report.returncode == 0, report.stdout + report.stderr
        # a sweep that is not a dry run writes what it saw: the adopted jobs' markers, the failure
        run_cli(slurm_args(conf, *grid, "max_failures=1"), workdir, check=False)
        assert len(list((workdir / "results").rglob("submitted.json"))) >= 2
        assert list((workdir / "results").rglob("failure.json"))
    finally:
        cancel(slurm_cluster, workdir)

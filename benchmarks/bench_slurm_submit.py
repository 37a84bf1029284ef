"""Submission benchmark (not a test): N jobs, one result dir each, over P model pools and many task
settings, submitted (held) to the test cluster, re-planned, then cancelled.

    eval "$(.ci/slurm/cluster.sh env)"
    .venv/bin/python benchmarks/bench_slurm_submit.py 1000 5000 10000 --fsync-ms 5

Layout: P model settings (pools, random predictor) x T task settings (copa_demo, each its own
description) x the nshot values x S seeds: one result dir per job, as a real grid has. The sweep runs in a child process whose
``os.fsync`` sleeps ``--fsync-ms`` first (what an fsync costs on NFS/Lustre/GPFS) and is counted, as are
the sbatch/squeue/sacct/scontrol commands it starts. Per N it prints jobs/s of the whole command, fsync
calls (per pool), scheduler calls, ``/proc/loadavg``; then the same for a re-plan of the pending sweep
(a dry run: every job ``skip: pending``). Targets (``--fsync-ms 5``): 5,000 jobs submitted in < 15 s
and 10,000 in < 30 s, whole command; a re-plan of 10,000 pending jobs in < 5 s. A miss exits 1.
Only this benchmark's own arrays are cancelled (their ids, from scheduled_jobs.jsonl).

slurmctld counts every array task against MaxJobCount, and keeps cancelled tasks for MinJobAge (300 s
on the test cluster): before each size the benchmark waits until the job table has room for it. The
shared test cluster's MaxJobCount is 10,000, so 10,000 jobs fit only into an empty table there (and a
run fills it for others for 5 minutes): measure that size against a private cluster beside the shared
one, the same config but a larger MaxJobCount::

    FEWSHOT_SLURM_DIR=/tmp/fewshot-slurm-bench FEWSHOT_SLURM_PORT_BASE=17317 FEWSHOT_SLURM_MAX_JOBS=30000 .ci/slurm/cluster.sh start
    SLURM_CONF=/tmp/fewshot-slurm-bench/etc/slurm.conf .venv/bin/python benchmarks/bench_slurm_submit.py 1000 5000 10000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

# target seconds for the whole submitting command, by N (with --fsync-ms 5)
SUBMIT_TARGET_S = {5000: 15.0, 10000: 30.0}
REPLAN_TARGET_S = {10000: 5.0}

# The child: os.fsync slowed down and counted, SLURM commands counted, then fewshot-eval's CLI.
CHILD = r"""
import atexit, json, os, subprocess, sys, time, runpy
delay = float(os.environ["BENCH_FSYNC_S"])
counts = {"fsync": 0}
_fsync = os.fsync
def fsync(fd):
    counts["fsync"] += 1
    time.sleep(delay)
    return _fsync(fd)
os.fsync = fsync
_init = subprocess.Popen.__init__
def init(self, args, *a, **k):
    name = os.path.basename(str(args[0] if isinstance(args, (list, tuple)) else str(args).split()[0]))
    counts[name] = counts.get(name, 0) + 1
    return _init(self, args, *a, **k)
subprocess.Popen.__init__ = init
atexit.register(lambda: open(os.environ["BENCH_COUNTS"], "w").write(json.dumps(counts)))
sys.argv = ["fewshot-eval", *sys.argv[1:]]
runpy.run_module("fewshot_eval", run_name="__main__")
"""


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def write_configs(conf: Path, pools: int, tasks: int) -> None:
    (conf / "model").mkdir(parents=True)
    (conf / "task").mkdir()
    for k in range(pools):
        (conf / "model" / f"bench{k}.yaml").write_text(
            f"name: bench{k}\npredictor: random\nmax_parallel: 4\nresources: {{timeout_min: 10}}\n")
    for j in range(tasks):
        (conf / "task" / f"bt{j:02d}.yaml").write_text(f"run_name: bench\ntasks: [copa_demo]\neval:\n  description: bench task {j}\n")


def job_table() -> tuple[int, int]:
    """(job records slurmctld holds now, its MaxJobCount)."""
    records = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i"], capture_output=True, text=True).stdout.count("\n")
    conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    m = re.search(r"MaxJobCount\s*=\s*(\d+)", conf)
    return records, int(m.group(1)) if m else 10000


def wait_for_room(n: int, timeout_s: float = 900) -> Optional[str]:
    """Wait until the job table has room for n held jobs (array tasks count one each; cancelled tasks leave
    it after MinJobAge); returns why not, when it never will."""
    t0 = time.monotonic()
    while True:
        records, limit = job_table()
        if records + n <= limit:
            return None
        if n > limit - 10 or time.monotonic() - t0 > timeout_s:
            return (f"{n} jobs do not fit into this cluster's job table (MaxJobCount {limit}, array tasks count one each; "
                    f"{records} in use): run it against a cluster with MaxJobCount above {n} (SLURM_CONF=...)")
        print(f"  (waiting for room in slurmctld's job table: {records} of {limit} records in use)", flush=True)
        time.sleep(20)


def run_child(cmd: list[str], cwd: Path, fsync_s: float) -> tuple[subprocess.CompletedProcess, float, dict]:
    counts = cwd / f".counts-{time.monotonic_ns()}.json"
    env = {**os.environ, "BENCH_FSYNC_S": str(fsync_s), "BENCH_COUNTS": str(counts)}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", CHILD, *cmd], cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    calls = json.loads(counts.read_text()) if counts.exists() else {}
    return proc, wall, calls


def calls_text(calls: dict) -> str:
    return ", ".join(f"{k} {calls.get(k, 0)}" for k in ("sbatch", "squeue", "sacct", "scontrol"))


def one(n: int, pools: int, tasks: int, nshots: list[int], fsync_s: float, keep: bool) -> list[str]:
    """Submit, re-plan and cancel an N-job sweep; returns the targets it missed."""
    seeds = math.ceil(n / (pools * tasks * len(nshots)))
    work = Path(tempfile.mkdtemp(prefix=f"fewshot-bench-{n}-"))
    write_configs(work / "conf", pools, tasks)
    names = ",".join(f"bench{k}" for k in range(pools))
    grid = ["-m", "--config-dir", str(work / "conf"), f"model={names}", "task=glob(bt*)", f"nshot={','.join(map(str, nshots))}",
            f"seed={','.join(map(str, range(seeds)))}", "num_trials=1", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug"]
    missed = []
    why = wait_for_room(n)
    if why:
        print(f"\n== {n} jobs: not run: {why}")
        return [f"{n}: not run ({why})"]
    before = loadavg()
    proc, wall, calls = run_child(grid + ["+hydra.launcher.additional_parameters.hold=true"], work, fsync_s)
    after = loadavg()
    log = work / "results" / "scheduled_jobs.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    arrays = sorted({r["job_id"].split("_")[0] for r in rows})
    try:
        planned = re.search(r"(\d+) jobs? planned in ([\d.]+)s", proc.stdout)
        if proc.returncode or not planned:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            return [f"{n}: the sweep failed (exit {proc.returncode})"]
        jobs = int(planned.group(1))
        dirs = len({r.get("result_dir") for r in rows})
        print(f"\n== {jobs} jobs ({pools} pools x {tasks} task settings x nshot={','.join(map(str, nshots))} x {seeds} seeds; {dirs} result dirs), "
              f"fsync +{fsync_s * 1000:g} ms")
        print(f"  submit:  {len(rows)} jobs in {len(arrays)} arrays, whole command {wall:.1f} s ({len(rows) / wall:.0f} jobs/s; "
              f"planning {float(planned.group(2)):.1f} s)")
        print(f"           fsync calls {calls.get('fsync', 0)} ({calls.get('fsync', 0) / pools:.0f} per pool, "
              f"{calls.get('fsync', 0) / max(1, len(rows)):.3f} per job); {calls_text(calls)}")
        print(f"           /proc/loadavg before {before}, after {after}")
        target = SUBMIT_TARGET_S.get(n)
        if target is not None:
            ok = wall < target and len(rows) == n
            print(f"           target: {n} jobs < {target:.0f} s whole command -> measured {wall:.1f} s: {'met' if ok else 'MISSED'}")
            if not ok:
                missed.append(f"submit {n}: {wall:.1f} s >= {target:.0f} s")
        # re-plan: every job is pending (held); one squeue + one sacct whatever the number of arrays
        re_proc, re_wall, re_calls = run_child(grid + ["dry_run=true"], work, fsync_s)
        m = re.search(r"Dry run: (\d+) jobs planned in ([\d.]+)s \((.*?)\)", re_proc.stdout)
        if re_proc.returncode or not m:
            print(re_proc.stdout[-3000:], re_proc.stderr[-3000:], sep="\n")
            return missed + [f"{n}: the re-plan failed (exit {re_proc.returncode})"]
        t_plan = float(m.group(2))
        print(f"  re-plan: {m.group(3)}; planning {t_plan:.2f} s, whole dry run {re_wall:.1f} s; {calls_text(re_calls)}; "
              f"fsync calls {re_calls.get('fsync', 0)}; loadavg {loadavg()}")
        target = REPLAN_TARGET_S.get(n)
        if target is not None:
            ok = t_plan < target and f"{n} skip: pending" in m.group(3)
            print(f"           target: re-plan of {n} pending jobs < {target:.0f} s -> measured {t_plan:.2f} s: {'met' if ok else 'MISSED'}")
            if not ok:
                missed.append(f"re-plan {n}: {t_plan:.2f} s >= {target:.0f} s")
        if re_calls.get("squeue", 0) > 2 or re_calls.get("sacct", 0) > 2:
            missed.append(f"re-plan {n}: {calls_text(re_calls)} (at most 2 squeue and 2 sacct calls expected)")
    finally:
        for i in range(0, len(arrays), 500):
            subprocess.run(["scancel", *arrays[i:i + 500]], check=False)
        if not keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
        else:
            print(f"  kept {work}")
    return missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="*", type=int, default=[1000, 5000, 10000], help="sweep sizes (jobs)")
    ap.add_argument("--pools", type=int, default=5, help="model settings (one pool each)")
    ap.add_argument("--tasks", type=int, default=20, help="task settings")
    ap.add_argument("--nshots", default="1,2,4,8,16", help="nshot values of the grid")
    ap.add_argument("--fsync-ms", type=float, default=5.0, help="latency added to every os.fsync of the sweep")
    ap.add_argument("--keep", action="store_true", help="keep the work dirs")
    args = ap.parse_args()
    nshots = [int(x) for x in args.nshots.split(",")]
    missed = []
    for n in args.n:
        missed += one(n, args.pools, args.tasks, nshots, args.fsync_ms / 1000, args.keep)
    if missed:
        print("\nMISSED: " + "; ".join(missed))
        sys.exit(1)
    print("\nall targets met")


if __name__ == "__main__":
    main()

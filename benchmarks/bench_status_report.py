"""Status and report of a large sweep: 10,000 planned cells.

    python benchmarks/bench_status_report.py       # targets: report --sweep < 10 s; status < 10 s, a line per model x task

Grid: 100 model settings x 20 task settings x 5 nshot values = 10,000 result cells, one trial each.
Half of them are complete (trial + results.json by the real writers), 1 in 10 of the others has
failed (``failure.json`` by the real recorder, as a failing job writes it), 1 in 4 of the rest was
submitted to SLURM (``submitted.json`` naming arrays of 8 tasks) and the rest is missing. The SLURM
ones are planned with squeue/sacct off the PATH (SLURM cannot be reached: pending), so the numbers
do not depend on a cluster. Prints ``/proc/loadavg``, then the wall and CPU time of each whole command
(start-up included), the number of lines ``status`` printed and its exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fewshot_eval.api import plan
from fewshot_eval.evaluate.trial_result import TrialResult
from fewshot_eval.store.failures import record_failure
from fewshot_eval.store.results import write_results, write_trial


def make_configs(root: Path, n_models: int, n_tasks: int) -> None:
    (root / "model").mkdir(parents=True)
    (root / "task").mkdir()
    for i in range(n_models):
        (root / "model" / f"bm{i:03d}.yaml").write_text(f"name: bm{i:03d}\npredictor: random\nresources: {{timeout_min: 10}}\n")
    for j in range(n_tasks):
        scoring = ["sum", "mean"][j % 2]
        (root / "task" / f"bt{j:02d}.yaml").write_text(f"run_name: bench\ntasks: [copa_demo]\neval:\n  scoring: {scoring}\n  seed: {j}\n")


def fill(jobs: list) -> dict[str, int]:
    """Complete every other cell, fail / submit some of the others; returns the counts written."""
    n = {"complete": 0, "failed": 0, "submitted": 0}
    array = 1000
    for k, job in enumerate(jobs):
        u = job.unit
        if k % 2 == 0:
            rows = [{"id": i, "pred": 0, "gold": 0} for i in range(4)]
            write_trial(u.result_dir, 0, TrialResult(metrics={"copa_demo.default": {"accuracy": 50.0 + k % 7}}, predictions={"copa_demo.default": rows},
                                                    info={"preferred_metric": {"copa_demo.default": "accuracy"}}), u.fingerprint)
            write_results(u.result_dir, {"fingerprint": u.fingerprint, "model": u.model_key, "model_name": u.model_key, "task_setting": u.task_key,
                                         "run_name": "bench", "tasks": ["copa_demo"], "nshot": u.nshot, "params": u.params,
                                         "wall_time_s": 1.0, "eval_time_s": 0.9}, [0])
            n["complete"] += 1
        elif k % 20 == 1:
            record_failure(u.result_dir, f"RuntimeError: bench failure {k % 3}", u.config_digest, job_id=None, log=None)
            n["failed"] += 1
        elif k % 4 == 3:
            u.result_dir.mkdir(parents=True, exist_ok=True)
            job_id = f"{array + n['submitted'] // 8}_{n['submitted'] % 8}"
            (u.result_dir / "submitted.json").write_text(json.dumps({"scheduler": "slurm", "job_id": job_id, "trials": u.trials}))
            n["submitted"] += 1
    return n


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the command, its result): on a shared machine the CPU time is the steadier figure."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cdir, out = tmp / "conf", tmp / "out"
        make_configs(cdir, args.models, args.tasks)
        sel = ["model=glob(bm*)", "task=glob(bt*)", "nshot=1,2,4,8,16", "num_trials=1", f"output_dir={out}", "hydra/launcher=submitit_slurm"]
        _, jobs = plan(sel, config_dirs=[cdir])
        cells = len(jobs)
        t0 = time.perf_counter()
        written = fill(jobs)
        print(f"grid: {args.models} models x {args.tasks} task settings x 5 nshot = {cells} planned cells; written in "
              f"{time.perf_counter() - t0:.0f} s: {written}")
        env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no squeue/sacct: the submitted ones are pending
        with open("/proc/loadavg") as f:
            print(f"/proc/loadavg: {f.read().strip()}")
        cli = [sys.executable, "-m", "fewshot_eval"]
        wall, cpu, proc = timed([*cli, "status", "-m", *sel, "--config-dir", str(cdir)], tmp, env)
        lines = proc.stdout.count("\n")
        summary = next((ln for ln in proc.stdout.splitlines() if " jobs planned in " in ln), proc.stderr[-2000:])
        print(f"fewshot-eval status: {wall:.2f} s wall ({cpu:.2f} s CPU), {lines} lines ({args.models * args.tasks} model x task rows), "
              f"exit {proc.returncode}   [target: < 10 s, lines ~ rows, exit 1: jobs failed]")
        print(f"  {summary}")
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert lines < args.models * args.tasks + 100, lines
        wall, cpu, proc = timed([*cli, "report", "--sweep", " ".join(sel), "--config-dir", str(cdir)], tmp, env)
        if proc.returncode != 0:
            sys.exit(f"report failed:\n{proc.stderr[-3000:]}")
        head = proc.stdout.splitlines()[0]
        print(f"fewshot-eval report --sweep: {wall:.2f} s wall ({cpu:.2f} s CPU; {head})   [target < 10 s]")
        assert f"{written['complete']} results" in head and f"({cells} jobs planned)" in head, head
        with open("/proc/loadavg") as f:
            print(f"/proc/loadavg: {f.read().strip()}")


if __name__ == "__main__":
    main()

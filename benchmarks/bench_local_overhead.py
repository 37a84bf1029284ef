"""Local launcher overhead: seconds per job beyond the evaluation itself.

    python benchmarks/bench_local_overhead.py --jobs 100      # target: <= 0.02 s/job
    python benchmarks/bench_local_overhead.py --pythonpath /tmp/main_checkout   # another checkout (a baseline)

Runs N jobs of the ``random`` baseline on a tiny task (one job per seed, 0-shot) with
fewshot-eval's default ``local`` launcher and with Hydra's ``basic`` launcher, in one run.
overhead/job = (sweep wall time - start-up - scoring time) / N, where start-up is the wall time of the
same command when everything is already complete (it plans and exits) and scoring time is the sum of
the trials' own evaluation time (each trial's ``metrics.json`` ``info.time_s``: reading the task,
templates, demonstrations, scoring, metrics -- a few ms per job for the ``random`` baseline). Everything
else counts as overhead: the launcher, the job's bookkeeping, building the evaluator and the result
writes (results.json's ``eval_time_s``, printed too, includes the trial files' fsynced writes). The jobs'
writes are durable as before: each job's files are fsynced together after its trial and at its end
(fewshot_eval.store.atomic.batched_fsync), not one fsync per file. Prints /proc/loadavg and, next to the wall time, the CPU time per job (user + sys of the
command: the steadier figure on a shared machine); the target next to the measured value; exits 1 when the
local launcher misses it.
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

TARGET_S = 0.02  # local launcher, seconds per job beyond start-up (file writes included)


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return "?"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the command."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(launcher: str, n: int, work: Path, env: dict[str, str]) -> dict[str, float]:
    out = work / launcher
    cmd = [sys.executable, "-m", "fewshot_eval", "-m", "model=random", "task=copa_demo", "nshot=0",
           f"seed=range(0,{n})", f"output_dir={out}", f"hydra/launcher={launcher}"]
    wall, cpu = timed(cmd, work, env)
    startup, startup_cpu = timed(cmd, work, env)  # everything complete now: plan + exit
    files = list(out.rglob("results.json"))
    assert len(files) == n, (launcher, len(files))
    evals = sum(json.loads(f.read_text())["eval_time_s"] for f in files)  # evaluator built + trials + their writes
    scoring = sum(json.loads(m.read_text()).get("info", {}).get("time_s", 0.0) for m in out.rglob("metrics.json"))
    return {"wall": wall, "startup": startup, "eval": evals, "scoring": scoring,
            "overhead": (wall - startup - scoring) / n, "cpu": (cpu - startup_cpu - scoring) / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--pythonpath", help="run the commands with this checkout first on PYTHONPATH (e.g. a baseline)")
    ap.add_argument("--launchers", default="local,basic")
    args = ap.parse_args()
    n = args.jobs
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([args.pythonpath, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    print(f"/proc/loadavg: {loadavg()}")
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.launchers.split(","):
            res[name] = measure(name, n, Path(tmp), env)
            print(f"/proc/loadavg: {loadavg()}")
    for name, r in res.items():
        print(f"{name:6s} launcher: {n} jobs in {r['wall']:.2f}s (start-up {r['startup']:.2f}s, trials' own time {r['scoring']:.2f}s, "
              f"eval_time_s incl. writes {r['eval']:.2f}s) "
              f"-> overhead {r['overhead']:.3f} s/job wall, {r['cpu']:.3f} s/job CPU")
    if "local" not in res:
        return
    local = res["local"]["overhead"]
    if "basic" in res:
        print(f"ratio basic/local overhead: {res['basic']['overhead'] / local:.1f}x")
    print(f"local overhead: {local:.3f} s/job   [target <= {TARGET_S:g} s/job]")
    if local > TARGET_S:
        sys.exit(f"MISSED: local launcher overhead {local:.3f} s/job > {TARGET_S:g} s/job")
    print("target met")


if __name__ == "__main__":
    main()

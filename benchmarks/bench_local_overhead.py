"""Local launcher overhead: seconds per job beyond the evaluation itself.

    python benchmarks/bench_local_overhead.py --jobs 100      # target: < 0.1 s/job

Runs N jobs of the ``random`` baseline on a tiny task (one job per seed, 0-shot) with
fewshot-eval's default ``local`` launcher and with Hydra's ``basic`` launcher, in one run.
overhead/job = (sweep wall time - start-up - scoring time) / N, where start-up is the wall time of the
same command when everything is already complete (it plans and exits) and scoring time is the
evaluation's own time without the result files: results.json's ``eval_time_s`` includes the fsynced
writes of the trial files, so those writes are counted as overhead here (the ``random`` baseline's
scoring itself takes ~0 s, so nothing is subtracted for it). Prints the target next to the measured
value and exits 1 when the local launcher misses it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.1  # local launcher, seconds per job beyond start-up (file writes included)


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def measure(launcher: str, n: int, work: Path) -> dict[str, float]:
    out = work / launcher
    cmd = [sys.executable, "-m", "fewshot_eval", "-m", "model=random", "task=copa_demo", "nshot=0",
           f"seed=range(0,{n})", f"output_dir={out}", f"hydra/launcher={launcher}"]
    wall = timed(cmd, work)
    startup = timed(cmd, work)  # everything complete now: plan + exit
    files = list(out.rglob("results.json"))
    assert len(files) == n, (launcher, len(files))
    evals = sum(json.loads(f.read_text())["eval_time_s"] for f in files)  # scoring + the fsynced result writes
    return {"wall": wall, "startup": startup, "eval": evals, "overhead": (wall - startup) / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100)
    n = ap.parse_args().jobs
    with tempfile.TemporaryDirectory() as tmp:
        res = {name: measure(name, n, Path(tmp)) for name in ("local", "basic")}
    for name, r in res.items():
        print(f"{name:6s} launcher: {n} jobs in {r['wall']:.2f}s (start-up {r['startup']:.2f}s, eval_time_s incl. writes {r['eval']:.2f}s) "
              f"-> overhead {r['overhead']:.3f} s/job")
    local = res["local"]["overhead"]
    print(f"ratio basic/local overhead: {res['basic']['overhead'] / local:.1f}x")
    print(f"local overhead: {local:.3f} s/job   [target < {TARGET_S:g} s/job]")
    if local > TARGET_S:
        sys.exit(f"MISSED: local launcher overhead {local:.3f} s/job > {TARGET_S:g} s/job")
    print("target met")


if __name__ == "__main__":
    main()

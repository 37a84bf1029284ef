"""Planning benchmark: dry run of a 10,000-job grid with half of it already complete on disk.

    python benchmarks/bench_planning.py            # target: planning under 5 s on 2 cores

Grid: 50 model settings x 20 task settings x 5 nshot values x 2 trials (split_trials=true).
Half of the jobs get a finished trial written to disk by the real writer (predictions file +
metrics.json listing it), so the planner must read their status and check their files. Prints
the planner's own time, the whole command's wall time, jobs/s, and checks the counts; then the
same for ``fewshot-eval status`` over the same selection.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fewshot_eval.api import plan
from fewshot_eval.evaluate.trial_result import TrialResult
from fewshot_eval.store.results import write_trial


def make_configs(root: Path, n_models: int, n_tasks: int) -> None:
    (root / "model").mkdir(parents=True)
    (root / "task").mkdir()
    for i in range(n_models):
        (root / "model" / f"bm{i:02d}.yaml").write_text(f"name: bm{i:02d}\npredictor: random\neval:\n  train_sep: ' {i}'\n")
    for j in range(n_tasks):
        scoring = ["sum", "mean"][j % 2]
        (root / "task" / f"bt{j:02d}.yaml").write_text(f"run_name: bench\ntasks: [copa_demo]\neval:\n  scoring: {scoring}\n  seed: {j}\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cdir, out = tmp / "conf", tmp / "out"
        make_configs(cdir, args.models, args.tasks)
        overrides = ["model=glob(bm*)", "task=glob(bt*)", "nshot=1,2,4,8,16", "num_trials=2", "split_trials=true", f"output_dir={out}"]
        t0 = time.perf_counter()
        _, jobs = plan(overrides, config_dirs=[cdir])
        t_api = time.perf_counter() - t0
        for k, job in enumerate(jobs):  # finish every other job on disk
            if k % 2 == 0:
                t = job.unit.trials[0]
                rows = [{"id": i, "pred": 0} for i in range(4)]  # with the real writer: metrics.json lists this file
                write_trial(job.unit.result_dir, t, TrialResult(metrics={}, predictions={"copa_demo.default": rows}), job.unit.fingerprint)
        cmd = [sys.executable, "-m", "fewshot_eval", "-m", *overrides, "dry_run=true", "--config-dir", str(cdir)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"dry run failed:\n{proc.stderr[-3000:]}")
        m = re.search(r"Dry run: (\d+) jobs planned in ([\d.]+)s \((.*)\)", proc.stdout)
        assert m, proc.stdout[-2000:]
        n, t_plan, counts = int(m.group(1)), float(m.group(2)), m.group(3)
        print(f"grid: {args.models} models x {args.tasks} task settings x 5 nshot x 2 trials = {n} jobs ({counts})")
        print(f"planning (in the sweeper): {t_plan:.2f} s  -> {n / t_plan:,.0f} jobs/s   [target < 5 s]")
        print(f"whole dry-run command (start-up + printing {n} rows): {wall:.2f} s")
        print(f"first, cold plan through the Python API (nothing on disk): {t_api:.2f} s")
        assert n == args.models * args.tasks * 10, n
        assert f"{n // 2} skip: complete" in counts and f"{n // 2} run" in counts, counts
        # fewshot-eval status over the same selection: the same counts, in seconds
        cmd = [sys.executable, "-m", "fewshot_eval", "status", "-m", *overrides, "--config-dir", str(cdir)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"status failed:\n{proc.stderr[-3000:]}")
        m = re.search(r"(\d+) jobs planned in ([\d.]+)s: (.*)\.", proc.stdout)
        assert m and int(m.group(1)) == n, proc.stdout[-2000:]
        print(f"fewshot-eval status: {wall:.2f} s for the whole command ({m.group(3)})   [target: a few seconds]")
        assert f"{n // 2} complete" in m.group(3) and f"{n // 2} missing" in m.group(3), m.group(3)


if __name__ == "__main__":
    main()

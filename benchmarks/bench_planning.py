"""Planning benchmark: dry run of a 10,000-job grid with half of it already complete on disk.

    python benchmarks/bench_planning.py            # target: planning under 5 s on 2 cores

Grid: 50 model settings x 20 task settings x 5 nshot values x 2 trials (split_trials=true), the
realistic case: every task setting names its own task definition (a copy of copa_demo's, with its own
data files) and every model setting is a ``clm`` model with its own weights dir (a copy of the tiny
GPT-2), so the per-task checks and fingerprints run 20 times and the per-model ones (weights
fingerprint, tokenizer/config checks) 50 times, all on files written just before (fresh, never read).
Half of the jobs get a finished trial written to disk by the real writer (predictions file +
metrics.json listing it), so the planner must read their status and check their files. Prints
the planner's own time next to its target, the whole command's wall time, jobs/s, and checks the
counts; then the same for ``fewshot-eval status`` over the same selection. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fewshot_eval.api import plan
from fewshot_eval.evaluate.trial_result import TrialResult
from fewshot_eval.store.results import write_trial


PLAN_TARGET_S = 5.0  # the planner's own time (the dry run's "planned in") for the 10,000 jobs, 2 cores
STATUS_TARGET_S = 10.0  # the whole ``fewshot-eval status`` command


def make_configs(root: Path, n_models: int, n_tasks: int) -> None:
    """Task settings over distinct task definitions with their own data, model settings with their own weights."""
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    repo = Path(__file__).resolve().parents[1]
    (root / "model").mkdir(parents=True)
    (root / "task").mkdir()
    (root / "task_def").mkdir()
    tiny = tiny_gpt2_path()
    for i in range(n_models):
        weights = root.parent / "weights" / f"bm{i:02d}"
        shutil.copytree(tiny, weights)
        (root / "model" / f"bm{i:02d}.yaml").write_text(f"name: bm{i:02d}\npredictor: clm\nweights: {weights}\n")
    copa = (repo / "conf" / "task_def" / "copa_demo.yaml").read_text()
    for j in range(n_tasks):
        data = root / "task_def" / "data" / f"bcopa{j:02d}"
        shutil.copytree(repo / "conf" / "task_def" / "data" / "copa_demo", data)
        (root / "task_def" / f"bcopa{j:02d}.yaml").write_text(copa.replace("data/copa_demo/", f"data/bcopa{j:02d}/"))
        scoring = ["sum", "mean"][j % 2]
        (root / "task" / f"bt{j:02d}.yaml").write_text(f"run_name: bench\ntasks: [bcopa{j:02d}]\neval:\n  scoring: {scoring}\n  seed: {j}\n")


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
                write_trial(job.unit.result_dir, t, TrialResult(metrics={}, predictions={f"{job.unit.task['tasks'][0]}.default": rows}), job.unit.fingerprint)
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
        print(f"planning (in the sweeper): {t_plan:.2f} s  -> {n / t_plan:,.0f} jobs/s   [target < {PLAN_TARGET_S:g} s]")
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
        print(f"fewshot-eval status: {wall:.2f} s for the whole command ({m.group(3)})   [target < {STATUS_TARGET_S:g} s]")
        assert f"{n // 2} complete" in m.group(3) and f"{n // 2} missing" in m.group(3), m.group(3)
    missed = [f"planning {t_plan:.2f} s > {PLAN_TARGET_S:g} s"] * (t_plan > PLAN_TARGET_S) + [f"status {wall:.2f} s > {STATUS_TARGET_S:g} s"] * (wall > STATUS_TARGET_S)
    if missed:
        sys.exit("MISSED: " + "; ".join(missed))
    print("all targets met")


if __name__ == "__main__":
    main()

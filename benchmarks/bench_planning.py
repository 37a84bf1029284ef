"""Planning benchmark: dry runs of 10,000- and 100,000-job grids with half of each already complete on disk.

    python benchmarks/bench_planning.py                    # both sizes; targets on 2 cores:
        10,000 jobs: planning (the dry run's "planned in") < 1.5 s
        100,000 jobs: whole dry-run command < 10 s, whole ``fewshot-eval status`` < 10 s
    python benchmarks/bench_planning.py --sizes 10000 --keep /tmp/grid   # keep the tree; --reuse /tmp/grid runs on it again
    python benchmarks/bench_planning.py --reuse /tmp/grid --pythonpath /tmp/main_checkout   # another checkout, same tree

Grids: 10,000 = 50 model settings x 20 task settings x 5 nshot values x 2 trials (split_trials=true);
100,000 = 100 x 100 x 5 x 2. The realistic case: every task setting names its own task definition (a
copy of copa_demo's, with its own data files) and every model setting is a ``clm`` model with its own
weights dir (the tiny GPT-2, hard-linked), so the per-task checks and fingerprints run once per task
setting and the per-model ones (weights fingerprint, tokenizer/config checks) once per model setting.
Half of the jobs get a finished trial written to disk by the real writer (predictions file +
metrics.json listing it; the fsyncs are skipped while the tree is built), so the planner must read
their status and check their files.

Prints /proc/loadavg, then per size: the planner's phases measured in-process (Hydra's composition of
the base config, Hydra's sweep expansion, settings resolution, identity/fingerprint hashing, the
planning checks, on-disk status/skip checks, listing the result dirs (one listdir each, done while the
SLURM/pool records are read and shared with the status checks), printing the plan table, the ETA), the
whole dry-run command's wall time (start-up and printing every row included), the planner's own
time as the command prints it, a cold plan through the Python API (nothing on disk) and the whole
``fewshot-eval status`` command; checks the counts. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

GRIDS = {10_000: (50, 20), 100_000: (100, 100)}  # jobs -> (model settings, task settings); x 5 nshot x 2 trials
NSHOTS = "1,2,4,8,16"
PLAN_10K_TARGET_S = 1.5  # the planner's own time (the dry run's "planned in") for 10,000 jobs
COMMAND_100K_TARGET_S = 10.0  # the whole dry-run command and the whole status command for 100,000 jobs


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return "?"


def make_configs(root: Path, n_models: int, n_tasks: int) -> None:
    """Task settings over distinct task definitions with their own data, model settings with their own weights."""
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    repo = Path(__file__).resolve().parents[1]
    (root / "model").mkdir(parents=True)
    (root / "task").mkdir()
    (root / "task_def").mkdir()
    tiny = tiny_gpt2_path()
    for i in range(n_models):
        weights = root.parent / "weights" / f"bm{i:03d}"
        shutil.copytree(tiny, weights, copy_function=os.link)  # own dir, shared bytes
        (root / "model" / f"bm{i:03d}.yaml").write_text(f"name: bm{i:03d}\npredictor: clm\nweights: {weights}\n")
    copa = (repo / "conf" / "task_def" / "copa_demo.yaml").read_text()
    for j in range(n_tasks):
        data = root / "task_def" / "data" / f"bcopa{j:03d}"
        shutil.copytree(repo / "conf" / "task_def" / "data" / "copa_demo", data)
        (root / "task_def" / f"bcopa{j:03d}.yaml").write_text(copa.replace("data/copa_demo/", f"data/bcopa{j:03d}/"))
        scoring = ["sum", "mean"][j % 2]
        (root / "task" / f"bt{j:03d}.yaml").write_text(f"run_name: bench\ntasks: [bcopa{j:03d}]\neval:\n  scoring: {scoring}\n  seed: {j}\n")


def overrides_of(tree: Path) -> list[str]:
    return ["model=glob(bm*)", "task=glob(bt*)", f"nshot={NSHOTS}", "num_trials=2", "split_trials=true", f"output_dir={tree / 'out'}"]


@contextlib.contextmanager
def no_fsync() -> Iterator[None]:
    """Building the tree: the real writer's files, without its fsyncs (minutes at 50,000 trials)."""
    saved = os.fsync
    os.fsync = lambda fd: None  # type: ignore[assignment]
    try:
        yield
    finally:
        os.fsync = saved  # type: ignore[assignment]


def build(tree: Path, n_models: int, n_tasks: int) -> float:
    """Configs + every other job finished on disk; returns the cold API plan's seconds (nothing on disk)."""
    from fewshot_eval.api import plan
    from fewshot_eval.evaluate.trial_result import TrialResult
    from fewshot_eval.store.results import write_trial

    make_configs(tree / "conf", n_models, n_tasks)
    t0 = time.perf_counter()
    _, jobs = plan(overrides_of(tree), config_dirs=[tree / "conf"])
    t_api = time.perf_counter() - t0
    rows = [{"id": i, "pred": 0} for i in range(4)]
    with no_fsync():
        for k, job in enumerate(jobs):
            if k % 2 == 0:
                t = job.unit.trials[0]
                write_trial(job.unit.result_dir, t, TrialResult(metrics={}, predictions={f"{job.unit.task['tasks'][0]}.default": rows}), job.unit.fingerprint)
    (tree / "cold_api_s").write_text(f"{t_api:.3f}")
    return t_api


# ---- per-phase times, in-process ------------------------------------------------------------------

class Phases:
    """Wraps named functions to add up their CPU time (outermost calls only per phase; CPU, not wall: on a
    shared machine the wall time mostly measures the others' load)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)
        self._depth: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []
        self.order: dict[str, None] = {}  # the phases in the order they were wrapped: the printout's

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        fn = getattr(owner, name, None)
        if fn is None:
            return
        self.order[phase] = None
        t, n, depth = self.t, self.n, self._depth

        def timed(*a: Any, **k: Any) -> Any:
            if depth[phase]:
                return fn(*a, **k)
            depth[phase] += 1
            t0 = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                t[phase] += time.process_time() - t0
                n[phase] += 1
                depth[phase] -= 1

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, fn))

    def undo(self) -> None:
        for u in reversed(self._undo):
            u()


def phase_times(tree: Path) -> tuple[dict[str, float], dict[str, int], int]:
    """The planner's phases for the tree's dry run, in this process (as ``fewshot_eval.api.plan`` + the dry run's table)."""
    import hydra._internal.core_plugins.basic_sweeper as basic
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    import fewshot_eval.api as api
    import fewshot_eval.plan.expand as expand
    import fewshot_eval.plan.identity as identity
    import fewshot_eval.plan.planner as planner
    import fewshot_eval.plan.table as table
    import fewshot_eval.plan.unit as unit
    from fewshot_eval.launch.slurm import pending_check

    p = Phases()
    p.wrap(ConfigLoaderImpl, "load_configuration", "hydra: compose the base config")
    p.wrap(expand, "expand", "sweep expansion (all)")
    p.wrap(basic.BasicSweeper, "split_arguments", "  of which Hydra's split_arguments")
    p.wrap(planner.Planner, "_plan", "planner._plan (all)")
    p.wrap(planner.Planner, "resolve", "  settings resolution + identity (all)")
    p.wrap(planner.Planner, "setting", "    of which loading the settings' files")
    p.wrap(planner, "unit_base", "    of which per setting (unit_base)")
    for name in ("job_identity", "identity_digest", "fingerprints", "catalog_identity", "_weights"):  # before UnitBase
        p.wrap(unit, name, "    of which identity/fingerprint hashing")
    for owner, name in ((getattr(identity, "IdentityTemplate", None), "digest"), (getattr(identity, "TaskFingerprints", None), "__call__"),
                        (getattr(unit, "UnitBase", None), "_derive")):
        if owner is not None:
            p.wrap(owner, name, "    of which identity/fingerprint hashing")
    p.wrap(planner.Planner, "check", "  planning checks (per job)")
    p.wrap(planner, "check_plan", "  planning checks (per plan)")
    p.wrap(planner.Planner, "_disk_status", "  on-disk status/skip checks")
    p.wrap(planner.Planner, "_failures", "  failure records")
    p.wrap(pending_check.SchedulerView, "prepare", "  result dirs listed + SLURM/pool records")  # prepare lists the plan's dirs first
    p.wrap(planner.Planner, "_has_submission", "  result dirs listed + SLURM/pool records")
    from fewshot_eval.store import dir_listing

    p.wrap(dir_listing.DirListing, "names", "    of which listing dirs (once each: shared)")
    p.wrap(planner.Planner, "_weights_note", "  weights notes / offline")
    p.wrap(planner.Planner, "_runs_offline", "  weights notes / offline")
    try:
        t0 = time.process_time()
        pl, jobs = api.plan(overrides_of(tree), config_dirs=[tree / "conf"])
        total = time.process_time() - t0
        t1 = time.process_time()
        from fewshot_eval.plan.unit import output_root

        paused = getattr(planner, "gc_paused", contextlib.nullcontext)  # as the sweeper prints it
        with paused():
            text = table.format_plan(jobs, output_root(pl.run, pl.cwd))
        p.t["printing the plan table (format)"] = time.process_time() - t1
        t1 = time.process_time()
        with open(os.devnull, "w") as f:
            f.write(text)
        p.t["printing the plan table (write)"] = time.process_time() - t1
        t1 = time.process_time()
        with paused():
            pl.estimate([j for j in jobs if j.status == planner.RUN])  # the dry run's ETA line
        p.t["ETA from earlier results (dry run)"] = time.process_time() - t1
        p.t["api.plan (all)"] = total
    finally:
        p.undo()
    ordered = {k: p.t[k] for k in p.order if k in p.t}
    ordered.update({k: v for k, v in p.t.items() if k not in ordered})
    return ordered, dict(p.n), len(jobs)


# ---- whole commands ---------------------------------------------------------------------------------

def env_for(pythonpath: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([pythonpath, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


CPU: list[float] = [0.0]  # the CPU seconds (user + sys) of the last command: on a shared machine the steadier figure


def command(tree: Path, args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    import resource

    cmd = [sys.executable, "-m", "fewshot_eval", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tree, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, proc


def dry_run(tree: Path, n: int, env: dict[str, str]) -> tuple[float, float, str]:
    wall, proc = command(tree, ["-m", *overrides_of(tree), "dry_run=true", "--config-dir", str(tree / "conf")], env)
    if proc.returncode != 0:
        sys.exit(f"dry run failed:\n{proc.stderr[-3000:]}")
    m = re.search(r"Dry run: (\d+) jobs planned in ([\d.]+)s \((.*?)\)", proc.stdout)
    assert m, proc.stdout[-2000:]
    assert int(m.group(1)) == n, (m.group(1), n)
    counts = m.group(3)
    assert f"{n // 2} skip: complete" in counts and f"{n // 2} run" in counts, counts
    assert proc.stdout.count("\n") > n, "every job has a row"
    return wall, float(m.group(2)), counts


def status(tree: Path, n: int, env: dict[str, str]) -> tuple[float, str]:
    wall, proc = command(tree, ["status", "-m", *overrides_of(tree), "--config-dir", str(tree / "conf")], env)
    if proc.returncode != 0:
        sys.exit(f"status failed:\n{proc.stderr[-3000:]}")
    m = re.search(r"(\d+) jobs planned in ([\d.]+)s: (.*)\.", proc.stdout)
    assert m and int(m.group(1)) == n, proc.stdout[-2000:]
    assert f"{n // 2} complete" in m.group(3) and f"{n // 2} missing" in m.group(3), m.group(3)
    return wall, m.group(3)


def run_size(tree: Path, n: int, pythonpath: str | None, repeat: int, phases: bool) -> list[str]:
    n_models, n_tasks = GRIDS[n]
    if not (tree / "cold_api_s").exists():
        t0 = time.perf_counter()
        build(tree, n_models, n_tasks)
        print(f"[{n} jobs] tree built in {time.perf_counter() - t0:.0f} s under {tree}")
    print(f"\n=== {n:,} jobs: {n_models} models x {n_tasks} task settings x 5 nshot x 2 trials (split_trials), half complete ===")
    print(f"/proc/loadavg: {loadavg()}")
    print(f"first, cold plan through the Python API (nothing on disk, at build time): {float((tree / 'cold_api_s').read_text()):.2f} s")
    if phases:
        t, calls, got = phase_times(tree)
        assert got == n, (got, n)
        print("phases, CPU seconds (in-process, wrapped: the wrappers add ~1 us per call):")
        for name, secs in t.items():
            extra = f"  ({calls[name]:,} calls)" if calls.get(name, 0) > 1 else ""
            print(f"  {name:48s} {secs:7.2f} s{extra}")
    env = env_for(pythonpath)
    missed = []
    for _ in range(repeat):
        wall, planned, counts = dry_run(tree, n, env)
        print(f"whole dry-run command: {wall:.2f} s wall, {CPU[0]:.2f} s CPU (planned in {planned:.2f} s; {counts}); load {loadavg().split()[0]}")
        swall, scounts = status(tree, n, env)
        print(f"whole status command:  {swall:.2f} s wall, {CPU[0]:.2f} s CPU ({scounts}); load {loadavg().split()[0]}")
    if n == 10_000 and planned > PLAN_10K_TARGET_S:
        missed.append(f"10,000 jobs planned in {planned:.2f} s > {PLAN_10K_TARGET_S:g} s")
    if n == 100_000:
        if wall > COMMAND_100K_TARGET_S:
            missed.append(f"100,000-job dry run {wall:.2f} s > {COMMAND_100K_TARGET_S:g} s")
        if swall > COMMAND_100K_TARGET_S:
            missed.append(f"100,000-job status {swall:.2f} s > {COMMAND_100K_TARGET_S:g} s")
    return missed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated: 10000, 100000")
    ap.add_argument("--keep", type=Path, help="build the trees under this dir and keep them")
    ap.add_argument("--reuse", type=Path, help="run on trees built before with --keep")
    ap.add_argument("--pythonpath", help="run the commands with this checkout first on PYTHONPATH (e.g. a baseline)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-phases", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"/proc/loadavg: {loadavg()}  ({os.cpu_count()} CPUs)")
    missed: list[str] = []
    with contextlib.ExitStack() as stack:
        base = args.reuse or args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for n in sizes:
            tree = base / f"grid{n}"
            if args.reuse and not tree.exists():
                sys.exit(f"--reuse {args.reuse}: no {tree} (build it with --keep)")
            tree.mkdir(parents=True, exist_ok=True)
            missed += run_size(tree, n, args.pythonpath, args.repeat, not args.no_phases and not args.pythonpath)
    print(f"\n/proc/loadavg: {loadavg()}")
    if missed:
        sys.exit("MISSED: " + "; ".join(missed))
    print("all targets met")


if __name__ == "__main__":
    main()

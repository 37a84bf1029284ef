"""Print a plan (dry run) and a sweep summary."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from fewshot_eval.plan.planner import PlannedJob
from fewshot_eval.plan.unit import unit_resources


def resources(job: PlannedJob, launcher: Optional[Mapping[str, Any]] = None, max_parallel: Optional[int] = None) -> str:
    """What the job really gets: its model's resources (GPUs as its predictor asks them: ``unit_resources``),
    with values set under ``hydra.launcher`` (SLURM) winning, and its pool's throttle (run param
    max_parallel, capped by array_parallelism)."""
    r = unit_resources(job.unit)
    for k, v in (launcher or {}).items():
        if k in r and v is not None:
            r[k] = v
    t = r["timeout_min"]
    limit = f"{job.time_limit_min}m(auto)" if job.time_limit_min else f"{t}m" if isinstance(t, (int, float)) else str(t)
    throttle = int(max_parallel or job.unit.model["max_parallel"])
    if launcher and launcher.get("array_parallelism"):
        throttle = min(throttle, int(launcher["array_parallelism"]))
    mem = f" {r['mem_gb']}G" if r.get("mem_gb") else ""
    return f"{r['nodes']}n x {r['gpus_per_node']}g x {r['cpus_per_task']}c{mem} {limit} | max {throttle}"


def format_plan(jobs: Sequence[PlannedJob], root: Path, launcher: Optional[Mapping[str, Any]] = None, max_parallel: Optional[int] = None) -> str:
    """One row per job: status, model, task setting, nshot, trials, result dir, resources (``launcher``:
    the SLURM launcher's settings, whose resource values apply to every pool)."""
    header = ("STATUS", "MODEL", "TASK", "NSHOT", "TRIALS", "RESULT DIR", "RESOURCES", "NOTE")
    rows = [header]
    under = os.path.join(str(root), "")  # "<root>/": a result dir's text below it is its path relative to root
    shown: dict[tuple[int, Any], tuple[Any, str]] = {}  # the jobs of a model setting share its resources: formatted once
    cut = len(under)
    for j in jobs:
        u = j.unit
        path = str(u.result_dir)
        if path.startswith(under):
            rdir = path[cut:]
        else:
            try:
                rdir = str(u.result_dir.relative_to(root))
            except ValueError:
                rdir = path
        t = u.trials
        trials = str(t[0]) if len(t) == 1 else ",".join(map(str, t)) if len(t) <= 4 else f"{t[0]}-{t[-1]}"
        key = (id(u.model), u.params.get("predictor"), j.time_limit_min)
        hit = shown.get(key)
        if hit is None or hit[0] is not u.model:
            hit = shown[key] = (u.model, resources(j, launcher, max_parallel))
        rows.append((j.status, u.model_key, u.task_key, str(u.nshot), trials, rdir, hit[1], j.detail))
    columns = list(zip(*rows))
    widths = [max(map(len, columns[i])) for i in range(len(header) - 1)]
    row = "  ".join(f"{{:<{w}}}" for w in widths)  # each cell left-justified to its column's width
    with_note = row + "  {}"
    return "\n".join(with_note.format(*r).rstrip() if r[-1] else row.format(*r).rstrip() for r in rows)  # str.format ignores the unused note


def counts(jobs: Sequence[PlannedJob]) -> str:
    c = Counter(j.status for j in jobs)
    return ", ".join(f"{n} {s}" for s, n in sorted(c.items(), key=lambda kv: -kv[1])) or "none"

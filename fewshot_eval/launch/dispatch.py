"""Hand the jobs the planner kept to the configured launcher."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn

from fewshot_eval.job import move_aside
from fewshot_eval.launch.joblog import log_launch
from fewshot_eval.plan.planner import PlannedJob
from fewshot_eval.store import layout

log = logging.getLogger("fewshot_eval")


def max_parallel(job: PlannedJob, global_override: int | None) -> int:
    return int(global_override) if global_override else int(job.unit.model["max_parallel"])


def prepare_overrides(jobs: Sequence[PlannedJob], override_completed: bool) -> list[list[str]]:
    """With override_completed, move old results aside once per result dir (never delete them);
    the jobs then run with override_completed=false so split trials do not move each other's work."""
    if not override_completed:
        return [list(j.overrides) for j in jobs]
    moved: set[Path] = set()
    for j in jobs:
        d = j.unit.result_dir
        if d not in moved and ((d / layout.RESULTS).exists() or any(d.glob("trial*"))):
            moved.add(d)
            log.info("moved old result %s -> %s", d, move_aside(d))
    return [list(j.overrides) + ["override_completed=false"] for j in jobs]


def launch_jobs(sweeper: Any, planner: Any, jobs: Sequence[PlannedJob], root: Path) -> Sequence[JobReturn]:
    cfg = sweeper.config
    launcher = sweeper.launcher
    overrides = prepare_overrides(jobs, bool(cfg.override_completed))
    name = type(launcher).__name__
    if hasattr(launcher, "planner"):
        launcher.planner = planner
    if hasattr(launcher, "pools"):
        launcher.pools = [(j.unit.model_key, max_parallel(j, cfg.max_parallel)) for j in jobs]
    if hasattr(launcher, "pool_info"):  # SLURM pools: the launcher logs each job with its SLURM job id
        launcher.pool_info = [
            {"pool": j.unit.model_key, "max_parallel": max_parallel(j, cfg.max_parallel),
             "resources": dict(j.unit.model["resources"]), "combine_tasks": bool(j.unit.model["job"]["combine_tasks"])}
            for j in jobs
        ]
        launcher.planned, launcher.output_root = list(jobs), root
        return launcher.launch(overrides, initial_job_idx=0)
    for j in jobs:
        log_launch(root, j, name)
    return launcher.launch(overrides, initial_job_idx=0)

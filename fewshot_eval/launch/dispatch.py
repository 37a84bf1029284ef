"""Hand the jobs the planner kept to the configured launcher."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn

from fewshot_eval.launch.batch import BatchLauncher, LaunchBatch
from fewshot_eval.launch.joblog import log_launch
from fewshot_eval.plan.planner import PlannedJob
from fewshot_eval.store import layout
from fewshot_eval.store.locks import ResultBusy, move_aside

log = logging.getLogger("fewshot_eval")


def prepare_overrides(jobs: Sequence[PlannedJob], override_completed: bool) -> list[list[str]]:
    """With override_completed, move old results aside once per result dir (never delete them);
    the jobs then run with override_completed=false so split trials do not move each other's work.
    A result a running job writes into is left alone (its jobs then find it 'running elsewhere')."""
    if not override_completed:
        return [list(j.overrides) + planned_id(j) for j in jobs]
    moved: set[Path] = set()
    for j in jobs:
        d = j.unit.result_dir
        if d not in moved and ((d / layout.RESULTS).exists() or any(d.glob("trial*"))):
            moved.add(d)
            try:
                log.info("moved old result %s -> %s", d, move_aside(d))
            except ResultBusy as e:
                log.warning("%s", e)
    return [list(j.overrides) + planned_id(j) + ["override_completed=false"] for j in jobs]


def planned_id(job: PlannedJob) -> list[str]:
    """The override that makes a job refuse to write a result other than the one planned."""
    return [f"planned_id={job.unit.id_digest[:16]}"]


def launch_jobs(sweeper: Any, planner: Any, jobs: Sequence[PlannedJob], root: Path) -> Sequence[JobReturn]:
    """Launch ``jobs``; fewshot-eval's launchers get the whole :class:`LaunchBatch`, others Hydra's plain call."""
    cfg = sweeper.config
    launcher = sweeper.launcher
    overrides = prepare_overrides(jobs, bool(cfg.override_completed))
    if isinstance(launcher, BatchLauncher):
        batch = LaunchBatch(list(jobs), overrides, root, planner, cfg.max_parallel)
        return launcher.launch_batch(batch)
    for j in jobs:
        log_launch(root, j, type(launcher).__name__)
    return launcher.launch(overrides, initial_job_idx=0)

"""Hand the jobs the planner kept to the configured launcher."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn, JobStatus

from fewshot_eval.launch.batch import BatchLauncher, LaunchBatch
from fewshot_eval.launch.joblog import log_launch
from fewshot_eval.outcome import Outcome
from fewshot_eval.plan.planner import PlannedJob
from fewshot_eval.store import layout
from fewshot_eval.store.locks import ResultBusy, move_aside

log = logging.getLogger("fewshot_eval")


def prepare_overrides(jobs: Sequence[PlannedJob], override_completed: bool) -> tuple[list[list[str]], set[Path]]:
    """(each job's overrides, result dirs another job is writing into).

    With override_completed, old results are moved aside once per result dir (never deleted);
    the jobs then run with override_completed=false so split trials do not move each other's work.
    A result a running job writes into is not moved: its jobs are not launched (running elsewhere)."""
    if not override_completed:
        return [list(j.overrides) + planned_id(j) for j in jobs], set()
    seen: set[Path] = set()
    busy: set[Path] = set()
    for j in jobs:
        d = j.unit.result_dir
        if d not in seen and ((d / layout.RESULTS).exists() or any(d.glob("trial*"))):
            seen.add(d)
            try:
                log.info("moved old result %s -> %s", d, move_aside(d))
            except ResultBusy as e:
                log.warning("%s", e)
                busy.add(d)
    return [list(j.overrides) + planned_id(j) + ["override_completed=false"] for j in jobs], busy


def planned_id(job: PlannedJob) -> list[str]:
    """The override that makes a job refuse to write a result other than the one planned."""
    return [f"planned_id={job.unit.id_digest[:16]}"]


def launch_jobs(sweeper: Any, planner: Any, jobs: Sequence[PlannedJob], root: Path) -> Sequence[JobReturn]:
    """Launch ``jobs``; fewshot-eval's launchers get the whole :class:`LaunchBatch`, others Hydra's plain call."""
    cfg = sweeper.config
    launcher = sweeper.launcher
    all_overrides, busy = prepare_overrides(jobs, bool(cfg.override_completed))
    keep = [i for i, j in enumerate(jobs) if j.unit.result_dir not in busy]
    todo, overrides = [jobs[i] for i in keep], [all_overrides[i] for i in keep]
    if not todo:
        launched: Sequence[JobReturn] = []
    elif isinstance(launcher, BatchLauncher):
        launched = launcher.launch_batch(LaunchBatch(todo, overrides, root, planner, cfg.max_parallel))
    else:
        for j in todo:
            log_launch(root, j, type(launcher).__name__)
        launched = launcher.launch(overrides, initial_job_idx=0)
    returns: list[JobReturn] = []
    it = iter(launched)
    for i, j in enumerate(jobs):
        if j.unit.result_dir in busy:
            ret = JobReturn(overrides=all_overrides[i], status=JobStatus.COMPLETED)
            ret.return_value = {"status": Outcome.ELSEWHERE.value, "reason": "being written by another job; not moved aside"}
            returns.append(ret)
        else:
            returns.append(next(it))
    return returns

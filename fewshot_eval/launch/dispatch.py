"""Hand the jobs the planner kept to the configured launcher.

    batch, left_out = prepare_batch(jobs, ...)        # old results moved aside (override_completed)
    launched = launcher.launch_batch(batch)            # fewshot-eval's launchers (BatchLauncher)
               or launch_plain(launcher, batch)        # any other Hydra launcher
    returns = all_returns(left_out, launched)          # one JobReturn per planned job
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn, JobStatus

from fewshot_eval.launch.batch import LaunchBatch
from fewshot_eval.launch.joblog import log_launch
from fewshot_eval.outcome import Outcome
from fewshot_eval.plan.planner import PlannedJob, planned_id_override
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
    return [planned_id_override(job.unit.id_digest[:16])]


def prepare_batch(jobs: Sequence[PlannedJob], root: Path, planner: Any, override_completed: bool,
                  max_parallel: Optional[int]) -> tuple[LaunchBatch, list[Optional[JobReturn]]]:
    """The batch to launch, and per planned job the return of one left out (None: it is in the batch).

    A job whose result another job is writing into is left out (``running elsewhere``)."""
    all_overrides, busy = prepare_overrides(jobs, override_completed)
    keep = [i for i, j in enumerate(jobs) if j.unit.result_dir not in busy]
    left_out: list[Optional[JobReturn]] = [None] * len(jobs)
    for i, j in enumerate(jobs):
        if j.unit.result_dir in busy:
            ret = JobReturn(overrides=all_overrides[i], status=JobStatus.COMPLETED)
            ret.return_value = {"status": Outcome.ELSEWHERE.value, "reason": "being written by another job; not moved aside"}
            left_out[i] = ret
    batch = LaunchBatch([jobs[i] for i in keep], [all_overrides[i] for i in keep], root, planner, max_parallel)
    return batch, left_out


def launch_plain(launcher: Any, batch: LaunchBatch) -> Sequence[JobReturn]:
    """A launcher that is not one of fewshot-eval's (``basic``, ``submitit_local``, a third-party
    one): each job logged, then Hydra's plain ``launch`` call."""
    for j in batch.jobs:
        log_launch(batch.output_root, j, type(launcher).__name__)
    return launcher.launch(batch.overrides, initial_job_idx=0)


def all_returns(left_out: Sequence[Optional[JobReturn]], launched: Sequence[JobReturn]) -> list[JobReturn]:
    """One return per planned job, in plan order: the launched ones fill the gaps of the left-out ones."""
    it = iter(launched)
    return [ret if ret is not None else next(it) for ret in left_out]

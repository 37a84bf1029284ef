"""``<output_dir>/scheduled_jobs.jsonl``: one line per launched job."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from fewshot_eval.plan.planner import PlannedJob
from fewshot_eval.store import layout
from fewshot_eval.store.atomic import append_jsonl_rows


def launch_row(job: PlannedJob, launcher: str, job_id: Optional[str] = None, **extra: Any) -> dict[str, Any]:
    """The line of one launched job."""
    u = job.unit
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": u.model_key,
        "task": u.task_key,
        "nshot": u.nshot,
        "trials": u.trials,
        "overrides": job.overrides,
        "result_dir": str(u.result_dir),
        "launcher": launcher,
        "job_id": job_id,
        **extra,
    }


def log_launch(root: Path, job: PlannedJob, launcher: str, job_id: Optional[str] = None, **extra: Any) -> None:
    log_launches(root, [launch_row(job, launcher, job_id, **extra)])


def log_launches(root: Path, rows: list[dict[str, Any]]) -> None:
    """Many lines at once (a SLURM sweep's submitted jobs). A record that cannot be written (a full disk)
    does not stop the sweep: one warning, the jobs say what they could not write themselves."""
    try:
        append_jsonl_rows(root / layout.JOBS_LOG, rows)
    except OSError as e:
        warn_unwritten(root / layout.JOBS_LOG, e)


_warned: set[str] = set()


def warn_unwritten(path: Path, e: OSError) -> None:
    """One line per file (and process) that a record could not be appended to."""
    if str(path) not in _warned:
        _warned.add(str(path))
        print(f"fewshot-eval: warning: cannot append to {path} ({e.strerror or e}); the sweep goes on without it.", file=sys.stderr)

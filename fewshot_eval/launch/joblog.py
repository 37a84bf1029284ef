"""``<output_dir>/scheduled_jobs.jsonl``: one line per launched job."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from fewshot_eval.plan.planner import PlannedJob
from fewshot_eval.store import layout
from fewshot_eval.store.atomic import append_jsonl, append_jsonl_rows


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
    append_jsonl(root / layout.JOBS_LOG, launch_row(job, launcher, job_id, **extra))


def log_launches(root: Path, rows: list[dict[str, Any]]) -> None:
    """Many lines at once (a SLURM sweep's submitted jobs)."""
    append_jsonl_rows(root / layout.JOBS_LOG, rows)

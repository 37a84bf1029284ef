"""``<output_dir>/.slurm_submissions/<token>-<pool>.json``: the durable record of one pool's SLURM submission.

One file per pool and sweep, written and fsynced once *before* the pool's first sbatch (every array it
will submit: its SLURM job name, its folder, which result dir and trials each task runs) and once
after its last sbatch (each array's job id)::

    {"token": "3f2a9c1e", "pool": "llama", "cluster": "fewshot", "started_at": "2026-11-29T02:07:21.418273+00:00",
     "sweep_dir": "...", "arrays": [{"job_name": "fewshot-llama-3f2a9c1e", "folder": ".../.submitit/llama/3f2a9c1e-0",
     "single": false, "job_id": "123", "tasks": [{"index": 0, "result_dir": "demo/llama/copa_demo/0shot.ab12cd34",
     "trials": [0, 1, 2]}, ...]}, ...]}

The per-result ``submitted.json`` markers are derived from it and written without an fsync each, so a
submission costs a few fsyncs per pool whatever its size. After a crash at any instant the record
says what may have reached SLURM: an array without a job id is looked up by its job name (which
carries the submission token) and adopted, or dropped when SLURM never saw it. The planner reads
these records (:func:`read_records`); a sweep that is not a dry run removes a record once none of its jobs
is queued or running any more.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from fewshot_eval.store.atomic import write_json

SUBMISSIONS_DIR = ".slurm_submissions"


def record_path(root: Path, token: str, pool: str) -> Path:
    return root / SUBMISSIONS_DIR / f"{token}-{pool}.json"


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write (or rewrite) a pool's record, durably: it is on disk when this returns."""
    write_json(path, record)


def read_records(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every record under ``root`` (unreadable or foreign files are skipped), oldest first."""
    folder = root / SUBMISSIONS_DIR
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".json") and not e.name.startswith("."))
    except OSError:
        return []
    out = []
    for name in names:
        try:
            record = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("arrays"), list):
            out.append((folder / name, record))
    return sorted(out, key=lambda r: str(r[1].get("started_at") or ""))


def remove_record(path: Path) -> None:
    path.unlink(missing_ok=True)


def task_dir(root: Path, task: dict[str, Any]) -> Optional[Path]:
    """The result dir a record's task writes (stored relative to the output dir)."""
    rel = task.get("result_dir")
    return (root / rel) if rel else None

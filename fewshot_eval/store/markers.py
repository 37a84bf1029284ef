"""``submitted.json``: the record of a result's pending SLURM submissions (written by the SLURM
launcher, read by the planner, trimmed by the job when it ends).

The launcher writes it without an fsync (:func:`add_submissions`): its durable copy is the pool's
submission record (:mod:`fewshot_eval.store.submissions`), so a submission costs a few fsyncs per
pool, not per job. The planner takes the newer of the two.

``submitting.json`` (:data:`INTENT`): the per-result intent that sweeps before the pool records wrote
just *before* ``sbatch``. It names the SLURM job name the submission carries (``<name>-<pool>-<token>``);
one left by a killed sweep is still reconciled by the next one (found in the queue and adopted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json, write_json

INTENT = "submitting.json"


def read_intent(result_dir: Path) -> Optional[dict[str, Any]]:
    intent = read_json(result_dir / INTENT)
    return intent if isinstance(intent, dict) and intent.get("job_name") else None


def drop_intent(result_dir: Path, token: Optional[str] = None) -> None:
    """Remove the intent record (only the one of ``token`` when given: another sweep's stays)."""
    if token is not None:
        intent = read_intent(result_dir)
        if intent is None or intent.get("token") != token:
            return
    (result_dir / INTENT).unlink(missing_ok=True)


def read_marker(result_dir: Path) -> Optional[dict[str, Any]]:
    marker = read_json(result_dir / layout.SUBMITTED)
    return marker if isinstance(marker, dict) else None


def marker_jobs(marker: dict[str, Any], trials: Optional[Sequence[int]]) -> list[dict[str, Any]]:
    """The submissions in a marker that produce ``trials`` (all of them when trials is None)."""
    jobs = marker.get("jobs") or ([{"job_id": marker["job_id"], "trials": marker.get("trials")}] if marker.get("job_id") else [])
    if trials is None:
        return jobs
    return [j for j in jobs if j.get("trials") is None or set(j["trials"]) & set(trials)]


def add_submissions(result_dir: Path, marker: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
    """Record ``jobs`` ({job_id, trials, stdout, stderr}) in ``submitted.json``: they replace the entries
    of the same trials, the entries of other trials (still queued from an earlier sweep) stay. Written
    without an fsync (the pool's submission record is the durable copy)."""
    new = {t for j in jobs for t in (j.get("trials") or [])}
    old = read_marker(result_dir)
    keep = [j for j in marker_jobs(old, None) if j.get("trials") and not set(j["trials"]) & new] if old else []
    write_json(result_dir / layout.SUBMITTED, {**marker, **jobs[0], "jobs": keep + jobs}, durable=False)


def forget_submission(result_dir: Path, trials: Sequence[int]) -> None:
    """A job that ended drops the ``submitted.json`` entries of ``trials``; the file goes with the last one."""
    marker = read_marker(result_dir)
    if marker is None:
        return
    done = marker_jobs(marker, trials)
    keep = [j for j in marker_jobs(marker, None) if j not in done]
    if keep:
        write_json(result_dir / layout.SUBMITTED, {**marker, **keep[0], "jobs": keep})
    else:
        (result_dir / layout.SUBMITTED).unlink(missing_ok=True)

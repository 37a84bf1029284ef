"""``failure.json``: the failed attempts at a result, so that a job that always fails is not
relaunched by every sweep.

    {"attempts": [{"time", "error", "config", "job_id", "log", "traceback"}, ...]}

``error`` is the one-line error (``ValueError: ...``), ``config`` a digest of the job's whole
configuration (so a changed batch size or device counts as a new try), ``log`` / ``traceback``
the files to read. The planner counts the trailing attempts with the same error and config:
after ``max_failures`` of them the job is shown ``failed`` and not launched until
``retry_failed=true`` or the config changes. A completed result drops the file.
"""

from __future__ import annotations

import re
import traceback as tb
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json, write_json, write_text

KEEP = 20  # attempts kept per result


def error_line(exc: BaseException) -> str:
    """``Type: first line of the message``."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0]}" if msg else type(exc).__name__


def _same(a: str, b: str) -> bool:
    """Two error lines name the same error when they differ only in numbers (ids, times, sizes)."""
    return re.sub(r"\d+", "#", a) == re.sub(r"\d+", "#", b)


def read_failures(result_dir: Path) -> list[dict[str, Any]]:
    data = read_json(result_dir / layout.FAILURE)
    return list(data.get("attempts") or []) if isinstance(data, dict) else []


def record_failure(result_dir: Path, error: str, config: str, *, job_id: Optional[str] = None, log: Optional[str] = None,
                   exc: Optional[BaseException] = None) -> None:
    """Append one failed attempt (once per ``job_id``: a SLURM failure seen by several sweeps counts once)."""
    attempts = read_failures(result_dir)
    if job_id and any(a.get("job_id") == job_id for a in attempts):
        return
    entry: dict[str, Any] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "error": error,
                             "config": config, "job_id": job_id, "log": log}
    if exc is not None:
        trace = result_dir / layout.FAILURE_TRACEBACK
        write_text(trace, "".join(tb.format_exception(type(exc), exc, exc.__traceback__)))
        entry["traceback"] = str(trace)
    write_json(result_dir / layout.FAILURE, {"attempts": (attempts + [entry])[-KEEP:]})


def retitle_failure(result_dir: Path, job_id: str, error: str) -> None:
    """Give the attempts of ``job_id`` another error line (what SLURM's record says it was)."""
    attempts = read_failures(result_dir)
    hit = [a for a in attempts if a.get("job_id") == job_id and a.get("error") != error]
    for a in hit:
        a["error"] = error
    if hit:
        write_json(result_dir / layout.FAILURE, {"attempts": attempts})


def failure_streak(result_dir: Path, config: str, unrecorded: Optional[dict[str, Any]] = None) -> tuple[int, Optional[dict[str, Any]]]:
    """(how many of the last attempts failed with the same error under this config, the last attempt).
    ``unrecorded``: an attempt seen but not written yet ({error, job_id, log, retitle}: a dry run's view of a
    SLURM failure), counted as :func:`record_failure` and :func:`retitle_failure` would record it."""
    attempts = read_failures(result_dir)
    if unrecorded:
        same = [a for a in attempts if unrecorded.get("job_id") and a.get("job_id") == unrecorded["job_id"]]
        if not same:
            attempts.append({"config": config, **{k: unrecorded.get(k) for k in ("error", "job_id", "log")}})
        elif unrecorded.get("retitle"):
            attempts = [{**a, "error": unrecorded["error"]} if a in same else a for a in attempts]
    if not attempts or attempts[-1].get("config") != config:
        return 0, None
    last = attempts[-1]
    n = 0
    for a in reversed(attempts):
        if a.get("config") != config or not _same(str(a.get("error")), str(last.get("error"))):
            break
        n += 1
    return n, last


def clear_failures(result_dir: Path) -> None:
    """A result that completed forgets its failed attempts."""
    (result_dir / layout.FAILURE).unlink(missing_ok=True)
    (result_dir / layout.FAILURE_TRACEBACK).unlink(missing_ok=True)

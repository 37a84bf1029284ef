"""Results written by release 0.1.0, whose ``metrics.json`` and ``results.json`` list no files.

Such a result is checked by content: each trial's ``metrics.json`` is read, and every sub-result it
scores must have its predictions file, holding ``n_examples`` whole rows. A deleted, emptied or cut
file makes the trial incomplete (it is recomputed), as the sizes do for results written since 0.2.0.
Once a whole 0.1.0 result passes, its ``files`` map (size and sha256 of each trial file) is added to
its ``results.json`` by the first sweep that launches (never a dry run, ``status`` or ``report``) --
atomically, under the result's locks, when the directory is writable -- so later plans check sizes only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import file_record, json_bytes, read_json, write_bytes


def _cut(rows: bytes) -> bool:
    """Does a JSONL file end inside a row (no final newline, or a last row that is not JSON)?"""
    if not rows:
        return False
    if not rows.endswith(b"\n"):
        return True
    try:
        json.loads(rows[: -1].rsplit(b"\n", 1)[-1])
    except ValueError:
        return True
    return False


def legacy_trial_files(result_dir: Path, trial: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(the ``files`` records of a 0.1.0 trial, keyed ``trial<t>/<name>``; what is wrong with its files)."""
    tdir = layout.trial_dir(result_dir, trial)
    prefix = f"{tdir.name}/"
    try:
        data = (tdir / layout.METRICS).read_bytes()
        scored = json.loads(data).get("metrics")
    except (OSError, ValueError, AttributeError):
        return {}, [f"{prefix}{layout.METRICS} missing or unreadable"]
    files = {prefix + layout.METRICS: file_record(data)}
    problems = []
    for sub, metrics in (scored if isinstance(scored, dict) else {}).items():
        path = layout.predictions_file(result_dir, trial, sub)
        name = prefix + path.name
        try:
            rows = path.read_bytes()
        except OSError:
            problems.append(f"{name} missing")
            continue
        want = metrics.get("n_examples") if isinstance(metrics, dict) else None
        n = rows.count(b"\n")
        if _cut(rows):
            problems.append(f"{name} is cut inside a row")
        elif isinstance(want, int) and n != want:
            problems.append(f"{name} has {n} of {want} rows")
        else:
            files[name] = file_record(rows)
    return files, problems


def legacy_problems(result_dir: Path, res: dict[str, Any], trials: list[int],
                    record: Callable[[Callable[[], None]], None] | None = None) -> list[str]:
    """What is wrong with the files of ``trials`` of a 0.1.0 result (``res``: its results.json); when
    nothing is wrong with any of its trials, the write of its ``files`` map goes to ``record`` (a planner's
    deferred writes: done by a sweep that launches, never by a dry run, ``status`` or ``report``)."""
    files: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    covered = [int(t) for t in res.get("trials") or [] if isinstance(t, int) or str(t).isdigit()]
    for t in covered:
        found, wrong = legacy_trial_files(result_dir, t)
        files.update(found)
        problems += wrong
    if record is not None and not problems and covered:
        record(lambda: record_files(result_dir, res, files))
    wanted = tuple(f"trial{t}/" for t in trials)
    return [p for p in problems if p.startswith(wanted)]


def record_files(result_dir: Path, res: dict[str, Any], files: dict[str, dict[str, Any]]) -> None:
    """Add ``files`` to the 0.1.0 ``results.json`` ``res`` (best effort: not when the directory is not
    writable, a job holds the result's aggregation lock, or results.json changed meanwhile)."""
    from fewshot_eval.store.locks import locked, writing

    if not os.access(result_dir, os.W_OK):
        return
    try:
        with writing(result_dir), locked(result_dir / layout.LOCK) as ok:
            if ok and read_json(result_dir / layout.RESULTS) == res:
                write_bytes(result_dir / layout.RESULTS, json_bytes({**res, "files": files}))
    except OSError:
        pass

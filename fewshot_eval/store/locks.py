"""Locks that keep concurrent sweeps and jobs from doubling or losing work.

* ``result_lock(dir)``  -- a sibling file ``.<name>.lock`` next to the result dir, held *shared*
  by every job writing into the dir for its whole run and *exclusive* by :func:`move_aside`:
  a result is never moved while a job writes into it, and a job never writes into a moved dir.
* ``claim_trials(dir, trials)`` -- one lock per trial (``.lock.trial<t>``), so split-trial jobs
  of one result run side by side and never compute the same trial twice.
* ``locked(dir/.lock, wait=True)`` -- the short aggregation lock: the last trial writes results.json.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

from fewshot_eval.store import layout


class ResultBusy(RuntimeError):
    """Another process is writing into the result dir."""


@contextmanager
def locked(path: Path, wait: bool = False, shared: bool = False) -> Iterator[bool]:
    """Hold a lock on ``path``; yields False when another process holds it (unless ``wait``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def result_lock_path(result_dir: Path) -> Path:
    return result_dir.parent / f".{result_dir.name}{layout.LOCK}"


@contextmanager
def writing(result_dir: Path) -> Iterator[None]:
    """Shared hold on a result dir for a job's whole run (blocks only while it is being moved aside)."""
    with locked(result_lock_path(result_dir), wait=True, shared=True):
        yield


@contextmanager
def claim_trials(result_dir: Path, trials: list[int]) -> Iterator[list[int]]:
    """Lock each trial of a result dir; yields the trials this process holds (the others run elsewhere)."""
    with ExitStack() as stack:
        held = [t for t in trials if stack.enter_context(locked(result_dir / f"{layout.LOCK}.trial{t}"))]
        yield held


def move_aside(result_dir: Path) -> Path | None:
    """Rename an old result to ``<dir>.old-<time>`` (never delete it); returns the new path, or None
    when there is nothing to move. Raises :class:`ResultBusy` while a job writes into it."""
    with locked(result_lock_path(result_dir)) as ok:
        if not ok:
            raise ResultBusy(f"{result_dir} is being written by another job; not moved (re-run once it has finished).")
        if not result_dir.exists():
            return None
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        target = result_dir.with_name(f"{result_dir.name}.old-{stamp}")
        n = 1
        while target.exists():
            target = result_dir.with_name(f"{result_dir.name}.old-{stamp}-{n}")
            n += 1
        result_dir.rename(target)
        return target

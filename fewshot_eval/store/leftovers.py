"""What killed writers and sweeps leave beside a result that completed later, tidied by the next sweep.

The planner of a sweep that launches (never a dry run, ``status`` or ``report``) calls :func:`tidy` for
each result it skips as complete, after planning (``Planner.commit``; at most ``TIDY_BUDGET_S`` per sweep):

* temp files of killed writes (``.<name>.<random>.tmp``, untouched for ``atomic.TEMP_MAX_AGE_S``: never a live
  writer's), in the result dir and its trial dirs;
* ``submitting.json`` (a sweep's intent before ``sbatch``) older than ``results.json``: the result completed
  after it was written, so the submission it announces has nothing left to do (a sweep re-running a result
  moves the old dir aside first, so a newer intent is never in a complete dir);
* lock files of dead owners (``FEWSHOT_LOCKS=files``: ``.lock.s-*``, ``.lock.x``, per trial and the
  result's sibling ``.<dir>.lock.*``), by the rule every lock taker applies (``store.locks``);
* a deleted ``identity.json``, written again from the result's identity and its results.json's fingerprint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import TEMP_MAX_AGE_S, TEMP_RE, read_json, write_json
from fewshot_eval.store.locks import is_lock_file, remove_if_stale
from fewshot_eval.store.markers import INTENT

TIDY_BUDGET_S = 1.0  # a sweep spends at most this long tidying (the rest: the next sweeps)


def tidy_all(results: Iterable[tuple[Path, dict[str, Any]]], budget_s: float = TIDY_BUDGET_S) -> list[str]:
    """:func:`tidy` for each (result dir, identity); the parent dirs (for the results' sibling lock files)
    are listed once each. At most ``budget_s`` seconds (a few directory listings per result: ~50 us each
    result on a local disk), from a random place on, so that the sweeps over a huge tree tidy it in turns
    without one of them waiting long. Returns what was removed or repaired."""
    import random
    import time

    done: list[str] = []
    siblings: dict[Path, list[str]] = {}
    cutoff = time.time() - TEMP_MAX_AGE_S
    todo = list(results)
    start = random.randrange(len(todo)) if todo else 0
    deadline = time.monotonic() + budget_s
    for rdir, identity in todo[start:] + todo[:start]:
        if time.monotonic() > deadline:
            break
        parent = rdir.parent
        if parent not in siblings:
            try:
                siblings[parent] = [e.name for e in os.scandir(parent) if e.name.startswith(".") and ".lock" in e.name]
            except OSError:
                siblings[parent] = []
        done += tidy(rdir, identity, siblings[parent], cutoff)
    return done


def tidy(result_dir: Path, identity: dict[str, Any], sibling_names: list[str] | None = None, cutoff: float | None = None) -> list[str]:
    """Tidy one complete result (see the module docstring): one listing of the dir and of each trial dir.
    Returns what was removed or repaired."""
    import time

    cutoff = time.time() - TEMP_MAX_AGE_S if cutoff is None else cutoff
    try:
        entries = list(os.scandir(result_dir))
    except OSError:
        return []
    names = {e.name for e in entries}
    if layout.RESULTS not in names:
        return []  # not complete any more (moved aside, being recomputed): left alone
    done: list[str] = []
    for e in entries:
        if e.name.startswith("trial") and e.is_dir(follow_symlinks=False):
            try:
                inner = [(Path(f.path), f) for f in os.scandir(e.path) if TEMP_RE.match(f.name)]
            except OSError:
                inner = []
            done += _remove_old(inner, cutoff)
    done += _remove_old([(Path(e.path), e) for e in entries if TEMP_RE.match(e.name)], cutoff)
    if INTENT in names:
        try:
            if os.stat(result_dir / INTENT).st_mtime_ns < os.stat(result_dir / layout.RESULTS).st_mtime_ns:
                (result_dir / INTENT).unlink()
                done.append(str(result_dir / INTENT))
        except OSError:
            pass
    locks = [result_dir / n for n in names if is_lock_file(n, layout.LOCK)]
    if sibling_names is None:
        try:
            sibling_names = [e.name for e in os.scandir(result_dir.parent)]
        except OSError:
            sibling_names = []
    own = f".{result_dir.name}{layout.LOCK}"
    locks += [result_dir.parent / n for n in sibling_names if is_lock_file(n, own)]
    done += [str(p) for p in locks if remove_if_stale(p)]
    if layout.IDENTITY not in names:
        res = read_json(result_dir / layout.RESULTS)
        if isinstance(res, dict) and res.get("fingerprint"):
            try:
                write_json(result_dir / layout.IDENTITY, {"fingerprint": res["fingerprint"], **identity})
                done.append(f"{result_dir / layout.IDENTITY} (written again)")
            except OSError:
                pass
    return done


def _remove_old(found: list[tuple[Path, Any]], cutoff: float) -> list[str]:
    """Remove the temp files among ``found`` untouched since ``cutoff`` (never a live writer's)."""
    done = []
    for path, entry in found:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                path.unlink()
                done.append(str(path))
        except OSError:
            continue
    return done

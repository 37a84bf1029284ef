"""Is a job's result complete, partial, stale or missing? Read from disk, never guessed.

A trial is done once its ``trial<t>/metrics.json`` exists *and* the predictions files listed in its
``files`` map exist with the recorded sizes; a result is complete once ``results.json`` covers the
trials *and* the trial files listed in its ``files`` map exist with the recorded sizes. Sizes only:
the status check runs for every job of a plan (10,000 jobs in a few seconds); the sha256 recorded
next to each size is there for :func:`verify_files` with ``hashes=True``. Results of 0.1.0 have no
``files`` maps: their files are checked by content, and the map recorded once (``store/legacy.py``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Optional, Union

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json
from fewshot_eval.store.dir_listing import DirListing
from fewshot_eval.store.legacy import legacy_problems, legacy_trial_files

COMPLETE, PARTIAL, STALE, MISSING = "complete", "partial", "stale", "missing"


# The fingerprint a result must carry: one string, or the set of accepted ones (the current
# formula's and those of earlier releases that give the same numbers).
Fingerprints = Union[str, Collection[str]]


def fingerprint_ok(recorded: object, expected: Fingerprints) -> bool:
    """Does a recorded fingerprint match what the job expects?"""
    return recorded == expected if isinstance(expected, str) else recorded in expected


@dataclass
class ResultStatus:
    state: str
    done_trials: list[int] = field(default_factory=list)
    detail: str = ""
    # files the result recorded that are missing or of another size ("trial1/<name> missing", ...);
    # a done trial can be listed when results.json no longer matches it (results.json is then rewritten)
    problems: list[str] = field(default_factory=list)


def verify_files(base: Path | str, files: Any, prefix: str = "", hashes: bool = False) -> list[str]:
    """Problems with the files a ``files`` map lists ({name relative to ``base``: {size, sha256}}):
    ``"<prefix><name> missing"`` or ``"... is N bytes, M recorded"`` (with ``hashes``: also a wrong
    sha256). An empty list when all are there, or when there is no map."""
    if not isinstance(files, (dict, Mapping)):  # dict first: isinstance against the ABC alone is slow
        return []
    problems = []
    root = os.fspath(base)
    for name, rec in files.items():
        path = os.path.join(root, name)  # str, not Path: this runs for every job of a plan
        try:
            size = os.stat(path).st_size
        except OSError:
            problems.append(f"{prefix}{name} missing")
            continue
        want = rec.get("size") if isinstance(rec, (dict, Mapping)) else None
        if isinstance(want, int) and size != want:
            problems.append(f"{prefix}{name} is {size} bytes, {want} recorded")
        elif hashes and isinstance(rec, Mapping) and rec.get("sha256"):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            if h.hexdigest() != rec["sha256"]:
                problems.append(f"{prefix}{name} content differs from its recorded sha256")
    return problems


def _trial_check(result_dir: Path, trial: int, fingerprint: Fingerprints, weights: str | None = None,
                 names: Optional[frozenset[str]] = None) -> tuple[Optional[bool], list[str]]:
    """``names``: the result dir's entries when the caller listed it (a trial dir not among them is not read)."""
    name = layout.trial_name(trial)
    if names is not None and name not in names:  # not listed: not there
        return None, []
    tdir = os.path.join(os.fspath(result_dir), name)  # layout.trial_dir, as text: this runs for every job of a plan
    m = read_json(os.path.join(tdir, layout.METRICS))
    if not isinstance(m, dict):
        return None, []
    if not fingerprint_ok(m.get("fingerprint"), fingerprint) or not weights_ok(m.get("weights"), weights):
        return False, []
    if isinstance(m.get("files"), (dict, Mapping)):
        problems = verify_files(tdir, m["files"], prefix=f"{name}/")
    else:  # a trial of 0.1.0: its files are checked by content
        problems = legacy_trial_files(result_dir, trial)[1]
    return (None, problems) if problems else (True, [])


def weights_ok(recorded: object, expected: str | None) -> bool:
    """Weights fingerprints are compared only when both are known."""
    return recorded is None or expected is None or recorded == expected


def trial_done(result_dir: Path, trial: int, fingerprint: Fingerprints, weights: str | None = None) -> bool | None:
    """True: trial finished for this fingerprint and weights (its files all there); False: finished for
    another (stale); None: not finished, or its files are missing or truncated (it is to be recomputed)."""
    return _trial_check(result_dir, trial, fingerprint, weights)[0]


def _incomplete(problems: list[str]) -> str:
    if not problems:
        return ""
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return "incomplete: " + ", ".join(problems[:3]) + more


def result_status(result_dir: Path, fingerprint: Fingerprints, trials: list[int], weights: str | None = None,
                  record: Callable[[Callable[[], None]], None] | None = None, listing: DirListing | None = None) -> ResultStatus:
    """Status of ``trials`` in ``result_dir``; ``complete`` only when results.json covers them all and
    their files are there. A result whose files were deleted or truncated is ``partial``/``missing``
    (the broken trials are recomputed) with ``detail`` saying what is wrong. ``record`` takes the write
    of a whole 0.1.0 result's files map, for a sweep that launches to do (reading itself writes nothing).
    ``listing``: a plan's view of the tree (files it does not list are not read)."""
    names = None
    if listing is not None:
        names = listing.names(result_dir)
        if names is None:
            return ResultStatus(MISSING)
    res = read_json(result_dir / layout.RESULTS) if names is None or layout.RESULTS in names else None
    problems: list[str] = []
    if isinstance(res, dict):
        if not fingerprint_ok(res.get("fingerprint"), fingerprint):
            return ResultStatus(STALE, detail="task data or definitions changed since this result was written")
        if not weights_ok(res.get("weights"), weights):
            return ResultStatus(STALE, detail="the model's weights changed since this result was written")
        covered = res.get("trials", [])
        if set(trials) <= set(covered):
            files = res.get("files")
            if isinstance(files, Mapping):
                wanted = tuple(f"trial{t}/" for t in trials)
                problems = verify_files(result_dir, {k: v for k, v in files.items() if k.startswith(wanted)})
            else:  # a result of 0.1.0
                problems = legacy_problems(result_dir, res, trials, record)
            if not problems:
                return ResultStatus(COMPLETE, sorted(covered))
    elif names is None and not result_dir.exists():
        return ResultStatus(MISSING)
    done = []
    for t in trials:
        ok, trial_problems = _trial_check(result_dir, t, fingerprint, weights, names)
        if ok is False:
            return ResultStatus(STALE, detail=f"trial {t} was computed from other task data, definitions or weights")
        if ok:
            done.append(t)
        problems += [p for p in trial_problems if p not in problems]
    return ResultStatus(PARTIAL if done else MISSING, done, _incomplete(problems), problems)

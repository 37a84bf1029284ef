"""Is a job's result complete, partial, stale or missing? Read from disk, never guessed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Union

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json

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


def weights_ok(recorded: object, expected: str | None) -> bool:
    """Weights fingerprints are compared only when both are known."""
    return recorded is None or expected is None or recorded == expected


def trial_done(result_dir: Path, trial: int, fingerprint: Fingerprints, weights: str | None = None) -> bool | None:
    """True: trial finished for this fingerprint; False: finished for another (stale); None: not finished."""
    m = read_json(layout.trial_dir(result_dir, trial) / layout.METRICS)
    if m is None:
        return None
    return fingerprint_ok(m.get("fingerprint"), fingerprint) and weights_ok(m.get("weights"), weights)


def result_status(result_dir: Path, fingerprint: Fingerprints, trials: list[int], weights: str | None = None) -> ResultStatus:
    """Status of ``trials`` in ``result_dir``; ``complete`` only when results.json covers them all."""
    res = read_json(result_dir / layout.RESULTS)
    if res is not None:
        if not fingerprint_ok(res.get("fingerprint"), fingerprint):
            return ResultStatus(STALE, detail="task data or definitions changed since this result was written")
        if not weights_ok(res.get("weights"), weights):
            return ResultStatus(STALE, detail="the model's weights changed since this result was written")
        if set(trials) <= set(res.get("trials", [])):
            return ResultStatus(COMPLETE, sorted(res["trials"]))
    if not result_dir.exists():
        return ResultStatus(MISSING)
    done = []
    for t in trials:
        ok = trial_done(result_dir, t, fingerprint, weights)
        if ok is False:
            return ResultStatus(STALE, detail=f"trial {t} was computed from other task data, definitions or weights")
        if ok:
            done.append(t)
    return ResultStatus(PARTIAL if done else MISSING, done)

"""How a launched job ended, as the job reports it and the sweep counts it."""

from __future__ import annotations

from enum import Enum
from typing import Any, Optional


class Outcome(str, Enum):
    """A job's outcome. ``ELSEWHERE``: another process holds (is running) every trial it needed."""

    RAN = "ran"
    SKIPPED = "skipped"
    ELSEWHERE = "running elsewhere"
    SUBMITTED = "submitted"
    FAILED = "failed"


def job_outcome(status_completed: bool, value: Any) -> Outcome:
    """The outcome of a finished job from Hydra's status and the task function's return value."""
    if not status_completed:
        return Outcome.FAILED
    if isinstance(value, dict):
        try:
            return Outcome(value.get("status", Outcome.RAN))
        except ValueError:
            return Outcome.RAN
    return Outcome.RAN


# How a sweep ends, as the app's exit status. The fewshot sweeper records it instead of exiting, so
# that Hydra finishes first (callbacks' on_multirun_end included); fewshot_eval.app exits with it.
# A stopped sweep: 128 + the signal number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
EXIT_OK = 0
EXIT_FAILED = 1  # a job failed (or failed too often to be relaunched)
EXIT_CONFIG = 2  # a planning or configuration error: nothing launched
EXIT_ELSEWHERE = 3  # no job failed, but some results are being computed by another process

_sweep_status: Optional[int] = None


def set_sweep_status(status: Optional[int]) -> None:
    """Record how the sweep of this process ended (None: no sweep yet)."""
    global _sweep_status
    _sweep_status = status


def sweep_status() -> Optional[int]:
    """The status :func:`set_sweep_status` recorded, or None (a single run, or no sweep has ended)."""
    return _sweep_status

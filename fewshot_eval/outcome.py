"""How a launched job ended, as the job reports it and the sweep counts it."""

from __future__ import annotations

from enum import Enum
from typing import Any


# A job process started by local_parallel writes its return value (JSON) to the file this names.
OUTCOME_FILE_ENV = "FEWSHOT_EVAL_OUTCOME_FILE"


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

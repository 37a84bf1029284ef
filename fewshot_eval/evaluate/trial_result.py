"""What one trial of one job produced, and the interface the job body calls (:class:`Evaluator`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence


@dataclass
class TrialResult:
    """What one trial of one job produced.

    ``metrics`` and ``predictions`` are keyed by sub-result id ``"<task>.<template>[.<lang>]"``
    (one per task x template x language of the task setting).
    """

    metrics: dict[str, dict[str, Any]]
    predictions: dict[str, list[dict[str, Any]]]
    info: dict[str, Any] = field(default_factory=dict)


class Evaluator(Protocol):
    def run_trial(self, tasks: Sequence[str], params: dict[str, Any], nshot: int, trial: int) -> TrialResult: ...

"""How a job launched by fewshot-eval's launchers ended, as ``JobReturn``s and one line each."""

from __future__ import annotations

from typing import Optional, Sequence

from hydra.core.utils import JobReturn, JobStatus

from fewshot_eval import progress
from fewshot_eval.outcome import Outcome, job_outcome


def failed_return(overrides: Sequence[str], exc: BaseException) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
    ret.return_value = exc
    return ret


def outcome_of(ret: JobReturn) -> Outcome:
    return job_outcome(ret.status == JobStatus.COMPLETED, ret._return_value)


def job_label(overrides: Sequence[str]) -> str:
    """``random x copa_demo nshot=0`` (``trial=1`` with split trials) from a job's overrides."""
    kv = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    if "model" not in kv or "task" not in kv:
        return " ".join(overrides)
    return f"{kv['model']} x {kv['task']}" + "".join(f" {k}={kv[k]}" for k in ("nshot", "trial") if k in kv)


def describe_return(ret: JobReturn, seconds: float, failure: Optional[str] = None) -> str:
    """How a job ended: ``ran in 1.2s``, ``skipped (complete) in 0.9s``, ``running elsewhere in 1.0s``,
    ``FAILED in 2.1s: exit 1: ValueError: ... (log: <sweep dir>/3/job.log)`` (``failure``: what to say
    after FAILED instead of the job's exception)."""
    outcome = outcome_of(ret)
    value = ret._return_value
    took = f"in {progress.fmt_duration(seconds) if seconds >= 10 else f'{seconds:.1f}s'}"
    if outcome == Outcome.FAILED:
        return f"FAILED {took}: {failure or value}"
    if outcome == Outcome.SKIPPED and isinstance(value, dict) and value.get("reason"):
        return f"skipped ({value['reason']}) {took}"
    return f"{outcome.value} {took}"

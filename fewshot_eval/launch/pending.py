"""Is a job that was submitted to SLURM still queued or running, or must it be submitted again?

The SLURM launcher writes ``submitted.json`` into each result dir it submits (format in
``fewshot_eval.launch.slurm.marker``) and the job removes it when it finishes. For every result
dir that still has one, the planner asks :func:`pending_reason`, which asks SLURM (squeue, then
sacct) about the job::

    PENDING, RUNNING, REQUEUED, ...          -> (True,  "SLURM job 12_3 is RUNNING")       skip: pending
    FAILED, CANCELLED, TIMEOUT, ... unknown  -> (False, "resubmit: SLURM job 12_3 was CANCELLED")
    COMPLETED (but no complete result)       -> (False, "resubmit: SLURM job 12_3 COMPLETED without a complete result")
    squeue and sacct cannot be reached       -> (True,  "... cannot be reached ...")      run with override_completed=true
                                                (local launcher: not pending, the note says the marker is ignored)

FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL ... also return a failed attempt, which the planner
records in the result's ``failure.json`` (once per job id), so SLURM resubmission obeys the
same ``max_failures`` limit as local runs.

The planner shows the note only when the job runs (a complete result is ``skip: complete``
whatever its marker says). States are cached for a few seconds per array, so planning many
result dirs of one array costs one squeue (and at most one sacct) call.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json
from fewshot_eval.store.markers import marker_jobs

# The job will still run (or is running): do not submit it again.
ACTIVE = frozenset({
    "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
    "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED", "RESV_DEL_HOLD",
})
CACHE_S = 10.0


class SlurmUnreachable(RuntimeError):
    """Neither squeue nor sacct answered."""


def _expand(job_id: str) -> list[str]:
    """``12_[1-3,5%2]`` -> 12_1 12_2 12_3 12_5 (squeue/sacct rows of array remainders); other ids as they are."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def _query(args: list[str]) -> tuple[bool, str]:
    """(answered, stdout); not answering = missing binary, timeout, or a non-zero exit other than 'invalid job id'."""
    if not shutil.which(args[0]):
        return False, f"{args[0]} not found"
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"{args[0]}: {e}"
    if p.returncode == 0:
        return True, p.stdout
    if "invalid job id" in p.stderr.lower():  # squeue: the job left the queue (MinJobAge)
        return True, ""
    lines = (p.stderr or p.stdout).strip().splitlines()
    return False, lines[-1] if lines else f"{args[0]}: exit {p.returncode}"


class SlurmStates:
    """Job states by id, fetched per array: ``squeue -r -j ARRAY`` for live jobs, then ``sacct -j ARRAY``."""

    def __init__(self, ttl_s: float = CACHE_S) -> None:
        self.ttl_s = ttl_s
        self._arrays: dict[str, tuple[float, dict[str, str]]] = {}

    def state(self, job_id: str) -> Optional[str]:
        """``RUNNING``, ``CANCELLED`` ... or None when SLURM does not know the job; raises SlurmUnreachable."""
        array = job_id.split("_")[0]
        hit = self._arrays.get(array)
        if hit is None or time.monotonic() - hit[0] > self.ttl_s:
            hit = (time.monotonic(), self._fetch(array))
            self._arrays[array] = hit
        # tasks of an array cancelled before any of them started have one record: the array's ("39")
        return hit[1].get(job_id) or hit[1].get(array)

    @staticmethod
    def _fetch(array: str) -> dict[str, str]:
        states: dict[str, str] = {}
        sq_ok, sq = _query(["squeue", "-h", "-r", "-j", array, "-o", "%i|%T"])
        for line in sq.splitlines() if sq_ok else []:
            jid, _, st = line.strip().partition("|")
            for j in _expand(jid):
                states[j] = st.strip()
        sa_ok, sa = _query(["sacct", "-n", "-X", "-P", "-j", array, "-o", "JobID,State"])
        for line in sa.splitlines() if sa_ok else []:
            jid, _, st = line.strip().partition("|")
            for j in _expand(jid):
                states.setdefault(j, st.split()[0] if st.split() else "UNKNOWN")  # "CANCELLED by 0"
        if not (sq_ok or sa_ok):
            raise SlurmUnreachable(sq)
        return states


_states = SlurmStates()


# Terminal states that count as a failed attempt (a user's scancel does not).
FAILED_STATES = frozenset({"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})


@dataclass
class Pending:
    """What SLURM says about a result dir's recorded submission."""

    pending: bool  # still queued or running: do not submit again
    note: str = ""  # why it is pending, or why it is submitted again ("resubmit: ...")
    failure: Optional[dict[str, Any]] = None  # a failed attempt to record: {job_id, error, log}


def pending_reason(result_dir: Path, trials: Optional[Sequence[int]] = None, override_completed: bool = False,
                   states: Optional[SlurmStates] = None, local_launcher: bool = False) -> Pending:
    """SLURM's view of a result dir with a ``submitted.json``; see the module docstring. With
    ``local_launcher`` a submission SLURM cannot be asked about is ignored (and the note says so)."""
    marker = read_json(result_dir / layout.SUBMITTED)
    if not isinstance(marker, dict):
        return Pending(False)
    jobs = marker_jobs(marker, trials)
    if not jobs:
        return Pending(False)
    states = states or _states
    seen = []
    for j in jobs:
        job_id = str(j["job_id"])
        try:
            state = states.state(job_id)
        except SlurmUnreachable as e:
            if local_launcher:
                return Pending(False, f"ignoring submitted.json of SLURM job {job_id}: SLURM cannot be reached from here ({e}); the local launcher runs it")
            if override_completed:
                return Pending(False, f"resubmit: SLURM job {job_id}: SLURM cannot be reached ({e}); override_completed=true")
            return Pending(True, f"SLURM job {job_id}: SLURM cannot be reached ({e}); treated as pending (override_completed=true runs it again)")
        if state in ACTIVE:
            return Pending(True, f"SLURM job {job_id} is {state}")
        seen.append((job_id, state, j))
    job_id, state, j = seen[0]
    if state is None:
        return Pending(False, f"resubmit: SLURM has no record of job {job_id} (cancelled while queued, or purged)")
    log = j.get("stderr") or marker.get("stderr") or j.get("stdout") or marker.get("stdout")
    if state == "COMPLETED":
        return Pending(False, f"resubmit: SLURM job {job_id} COMPLETED without a complete result (log: {log})")
    if state == "CANCELLED":
        return Pending(False, f"resubmit: SLURM job {job_id} was CANCELLED")
    failure = {"job_id": job_id, "error": f"SLURM job {job_id} was {state}", "log": log} if state in FAILED_STATES else None
    return Pending(False, f"resubmit: SLURM job {job_id} was {state} (log: {log})", failure)

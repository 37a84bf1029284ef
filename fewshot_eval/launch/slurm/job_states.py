"""Is a job that was submitted to SLURM still queued or running, or must it be submitted again?

The SLURM launcher writes ``submitted.json`` into each result dir it submits (format in
``fewshot_eval.launch.slurm.submission.marker``) and the job removes it when it finishes. For every result
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

SLURM down: squeue and sacct are asked side by side, and the first answer of each tool is a
*probe* with a short timeout (``FEWSHOT_SLURM_PROBE_S``, 5 s). A tool that does not answer is
taken as down for the rest of the sweep (the process): it is reported once (a warning) and not
asked again, so a plan over hundreds of result dirs prints in seconds, not in hours.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from fewshot_eval.store import layout
from fewshot_eval.store.markers import INTENT, drop_intent, marker_jobs, read_intent, read_marker

# The job will still run (or is running): do not submit it again.
ACTIVE = frozenset({
    "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
    "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED", "RESV_DEL_HOLD",
})
CACHE_S = 10.0
# Pending reasons (squeue %r) of a job that will not start as it is: flagged in the plan.
NEVER = {
    "PartitionConfig": "the partition cannot give what it asks (nodes, GPUs, CPUs or account/QOS)",
    "ReqNodeNotAvail": "a required node is unavailable (down, drained or reserved)",
    "PartitionNodeLimit": "more nodes than the partition allows", "PartitionTimeLimit": "a longer time limit than the partition allows",
    "BadConstraints": "its constraints match no node", "InvalidAccount": "invalid account", "InvalidQOS": "invalid QOS",
    "DependencyNeverSatisfied": "its dependency can never be satisfied",
}
HELD = ("JobHeldUser", "JobHeldAdmin")
PROBE_S = 5.0  # first call of squeue / sacct in a sweep: a tool silent this long is taken as down
QUERY_S = 30.0  # later calls, once the tool has answered
DOWN_S = 300.0  # a tool found down is not asked again for this long (a sweep's planning; api users re-probe later)
log = logging.getLogger("fewshot_eval")


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


def probe_timeout() -> float:
    try:
        return float(os.environ.get("FEWSHOT_SLURM_PROBE_S") or PROBE_S)
    except ValueError:
        return PROBE_S


def _start(args: list[str]) -> "subprocess.Popen[str] | str":
    """The running query, or why it could not start."""
    if not shutil.which(args[0]):
        return f"{args[0]} not found"
    try:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # a timeout kills the whole group (wrappers, retries)
    except OSError as e:
        return f"{args[0]}: {e}"


def _finish(args: list[str], proc: "subprocess.Popen[str] | str", timeout: float) -> tuple[bool, str]:
    """(answered, stdout) of a query started by :func:`_start`."""
    if isinstance(proc, str):
        return False, proc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            proc.kill()
        proc.communicate()
        return False, f"{args[0]} did not answer in time"
    return _answer(args, proc.returncode, out, err)


def _query(args: list[str], timeout: float = QUERY_S) -> tuple[bool, str]:
    """(answered, stdout); not answering = missing binary, timeout, or a non-zero exit other than 'invalid job id'."""
    return _finish(args, _start(args), timeout)


def _answer(args: list[str], rc: int, stdout: str, stderr: str) -> tuple[bool, str]:
    p = subprocess.CompletedProcess(args, rc, stdout, stderr)
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
        self.reasons: dict[str, str] = {}  # job id -> squeue's pending reason
        self.down: dict[str, str] = {}  # tool -> why it is taken as down for the rest of the sweep
        self._down_since = 0.0
        self._answered: set[str] = set()  # tools that answered once (later calls get the long timeout)

    def state(self, job_id: str, cluster: Optional[str] = None) -> Optional[str]:
        """``RUNNING``, ``CANCELLED`` ... or None when SLURM does not know the job; raises SlurmUnreachable.
        ``cluster`` (the marker's): the job is asked of that cluster (``-M``), never taken for a job of another."""
        array = job_id.split("_")[0]
        key = f"{cluster or ''}/{array}"
        hit = self._arrays.get(key)
        if hit is None or time.monotonic() - hit[0] > self.ttl_s:
            hit = (time.monotonic(), self._fetch(array, cluster))
            self._arrays[key] = hit
        # tasks of an array cancelled before any of them started have one record: the array's ("39")
        return hit[1].get(job_id) or hit[1].get(array)

    def by_name(self, name: str, cluster: Optional[str] = None) -> dict[str, str]:
        """Job states of every job (array task) called ``name``: what a sweep killed right after sbatch left."""
        m = ["-M", cluster] if cluster else []
        answers = self._ask({"squeue": ["squeue", *m, "-h", "-r", "--name", name, "-o", "%i|%T"],
                             "sacct": ["sacct", *m, "-n", "-X", "-P", "--name", name, "-S", "now-30days", "-o", "JobID,State"]})
        states: dict[str, str] = {}
        for tool in ("squeue", "sacct"):
            ok, text = answers[tool]
            for line in text.splitlines() if ok else []:
                jid, bar, st = line.strip().partition("|")
                if not bar:
                    continue
                for j in _expand(jid):
                    states.setdefault(j, st.split()[0] if st.split() else "UNKNOWN")
        if not any(ok for ok, _ in answers.values()):
            raise SlurmUnreachable(answers["squeue"][1])
        return states

    def _ask(self, queries: dict[str, list[str]]) -> dict[str, tuple[bool, str]]:
        """Run the queries of the tools not known to be down side by side; a tool's first query is a probe."""
        if self.down and time.monotonic() - self._down_since > DOWN_S:
            self.down.clear()
            self._answered.clear()
        started = {tool: (args, _start(args)) for tool, args in queries.items() if tool not in self.down}
        out: dict[str, tuple[bool, str]] = {tool: (False, why) for tool, why in self.down.items() if tool in queries}
        t0 = time.monotonic()
        for tool, (args, proc) in started.items():
            limit = QUERY_S if tool in self._answered else probe_timeout()
            ok, text = _finish(args, proc, max(0.1, limit - (time.monotonic() - t0)))
            if ok:
                self._answered.add(tool)
            elif tool not in self._answered:  # never answered in this sweep: down, say so once, never ask again
                self.down[tool] = text
                self._down_since = time.monotonic()
                log.warning("fewshot-eval: %s cannot be reached (%s); not asked again in this sweep", tool, text)
            out[tool] = (ok, text)
        return out

    def _fetch(self, array: str, cluster: Optional[str] = None) -> dict[str, str]:
        states: dict[str, str] = {}
        m = ["-M", cluster] if cluster else []
        answers = self._ask({"squeue": ["squeue", *m, "-h", "-r", "-j", array, "-o", "%i|%T|%r"],
                             "sacct": ["sacct", *m, "-n", "-X", "-P", "-j", array, "-o", "JobID,State"]})
        (sq_ok, sq), (sa_ok, sa) = answers["squeue"], answers["sacct"]
        for line in sq.splitlines() if sq_ok else []:
            jid, bar, st = line.strip().partition("|")
            if not bar:  # "CLUSTER: name" (with -M)
                continue
            st, _, reason = st.partition("|")
            for j in _expand(jid):
                states[j] = st.strip()
                if reason.strip() and reason.strip() != "None":
                    self.reasons[j] = reason.strip().split(",")[0]
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
    states = states or _states
    marker = read_marker(result_dir)
    if (marker is None or not marker_jobs(marker, None)) and (result_dir / INTENT).exists():
        try:
            adopted, note = reconcile(result_dir, states)
        except SlurmUnreachable as e:
            if local_launcher or override_completed:
                return Pending(False, f"ignoring an interrupted SLURM submission: SLURM cannot be reached ({e})")
            return Pending(True, f"an interrupted SLURM submission: SLURM cannot be reached ({e}); treated as pending")
        if adopted is None:
            return Pending(False, note)
        marker = adopted
    if not isinstance(marker, dict):
        return Pending(False)
    jobs = marker_jobs(marker, trials)
    if not jobs:
        return Pending(False)
    seen = []
    for j in jobs:
        job_id = str(j["job_id"])
        try:
            state = states.state(job_id, marker.get("cluster"))
        except SlurmUnreachable as e:
            if local_launcher:
                return Pending(False, f"ignoring submitted.json of SLURM job {job_id}: SLURM cannot be reached from here ({e}); the local launcher runs it")
            if override_completed:
                return Pending(False, f"resubmit: SLURM job {job_id}: SLURM cannot be reached ({e}); override_completed=true")
            return Pending(True, f"SLURM job {job_id}: SLURM cannot be reached ({e}); treated as pending (override_completed=true runs it again)")
        if state in ACTIVE:
            return Pending(True, f"SLURM job {job_id} is {state}{why_pending(states, job_id, state)}")
        seen.append((job_id, state, j))
    job_id, state, j = seen[0]
    if state is None:
        return Pending(False, f"resubmit: SLURM has no record of job {job_id} (cancelled while queued, or purged)")
    err_log = j.get("stderr") or marker.get("stderr")
    out_log = j.get("stdout") or marker.get("stdout")
    log = err_log or out_log
    if state == "COMPLETED":
        return Pending(False, f"resubmit: SLURM job {job_id} COMPLETED without a complete result (log: {log})")
    if state == "CANCELLED":
        return Pending(False, f"resubmit: SLURM job {job_id} was CANCELLED")
    timeouts = timed_out(state, [err_log, out_log])
    if timeouts:
        error = f"SLURM job {job_id} timed out {timeouts}× — raise timeout_min"
        _retitle_failure(result_dir, job_id, error)
        return Pending(False, f"resubmit: {error} (log: {log})", {"job_id": job_id, "error": error, "log": log})
    last = last_error_line(err_log) if state in FAILED_STATES else None
    why = f"; last error: {last}" if last else ""
    failure = {"job_id": job_id, "error": f"SLURM job {job_id} was {state}", "log": log} if state in FAILED_STATES else None
    return Pending(False, f"resubmit: SLURM job {job_id} was {state} (log: {log}){why}", failure)


def why_pending(states: SlurmStates, job_id: str, state: str) -> str:
    """`` (Priority)``, `` (held: release it with scontrol release 12)``, `` — will never start: ...``."""
    reason = states.reasons.get(job_id) or states.reasons.get(job_id.split("_")[0]) if state == "PENDING" else None
    if not reason:
        return ""
    base = reason.split("(")[0].strip()
    if base in NEVER:
        return (f" ({reason}) — will never start: {NEVER[base]}; scancel {job_id.split('_')[0]} and fix the model's "
                f"resources or hydra.launcher options")
    if base in HELD:
        return f" (held: {reason}; scontrol release {job_id.split('_')[0]} starts it)"
    return f" ({reason})"


INTENT_GRACE_S = 120  # an intent younger than this may belong to a sweep still submitting: not removed


def reconcile(result_dir: Path, states: SlurmStates) -> tuple[Optional[dict[str, Any]], str]:
    """A ``submitting.json`` without job ids (the sweep died between recording its intent and
    recording the job ids): adopt the jobs SLURM knows under the intent's job name (writes
    ``submitted.json``), or drop the intent when SLURM has none. Returns (marker or None, note)."""
    import datetime as _dt

    from fewshot_eval.store.atomic import write_json

    intent = read_intent(result_dir)
    if intent is None:
        return None, ""
    name = str(intent["job_name"])
    found = states.by_name(name, intent.get("cluster"))
    if not found:
        try:
            age = time.time() - _dt.datetime.fromisoformat(str(intent.get("started_at"))).timestamp()
        except ValueError:
            age = INTENT_GRACE_S + 1
        if age > INTENT_GRACE_S:
            try:
                drop_intent(result_dir, intent.get("token"))
            except OSError:  # a tree this user cannot write (a dry run of a colleague's results)
                pass
        return None, f"resubmit: an interrupted submission ({name}) never reached SLURM"
    arrays = sorted({j.split("_")[0] for j in found}, key=lambda a: int(a) if a.isdigit() else 0)
    array = arrays[-1]
    jobs = []
    for t in intent.get("tasks") or []:
        job_id = array if intent.get("single") else f"{array}_{t['index']}"
        out, err = _log_paths(str(intent.get("folder") or ""), job_id)
        jobs.append({"job_id": job_id, "trials": t.get("trials"), "stdout": out, "stderr": err})
    if not jobs:
        return None, ""
    marker = {"scheduler": "slurm", **jobs[0], "array_job_id": array, "pool": intent.get("pool"), "job_name": name,
              "cluster": intent.get("cluster"), "submitted_at": intent.get("started_at"), "adopted": True,
              "submitit_folder": str(intent.get("folder")), "jobs": jobs}
    try:
        write_json(result_dir / layout.SUBMITTED, marker)
        drop_intent(result_dir, intent.get("token"))
    except OSError:  # a tree this user cannot write: adopted for this plan only
        pass
    return marker, ""


def _log_paths(folder: str, job_id: str) -> tuple[Optional[str], Optional[str]]:
    if not folder:
        return None, None
    try:
        from submitit.core.utils import JobPaths

        paths = JobPaths(folder, job_id=job_id, task_id=0)
        return str(paths.stdout), str(paths.stderr)
    except Exception:  # noqa: BLE001 - only for the note
        return None, None


def _retitle_failure(result_dir: Path, job_id: str, error: str) -> None:
    """The job itself recorded its end as submitit's 'UncompletedJobError: Job not requeued because:
    timed-out too many times': name it for what it is, so the plan says what to change."""
    from fewshot_eval.store.failures import retitle_failure

    try:
        retitle_failure(result_dir, job_id, error)
    except OSError:
        pass


TAIL_BYTES = 256 * 1024
GAVE_UP = ("Job not requeued because: timed-out too many times", "Job not requeued because: timed-out and not checkpointable")


def _tail(path: Optional[str]) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def timed_out(state: str, logs: Sequence[Optional[str]]) -> int:
    """How many times a job that ended for good timed out (0: it did not end by timing out). submitit requeues a
    timed-out job up to max_num_timeout times; then the job ends FAILED with 'timed-out too many times' in its log."""
    texts = [_tail(p) for p in dict.fromkeys(x for x in logs if x)]
    if state != "TIMEOUT" and not any(g in t for t in texts for g in GAVE_UP):
        return 0
    # each signal is logged by submitit's handler and again through the root logger, to .out and .err: count times
    stamps = {m.group(1) or m.group(2) for t in texts for m in _TIMED_OUT_RE.finditer(t)}
    return max(1, len(stamps))


_TIMED_OUT_RE = re.compile(r"(?:\((\d{4}-[^)]*)\)|\[(\d{4}-[^\]]*)\]\[submitit\]\[WARNING\]) - Caught signal \S+ on \S+: this job is timed-out")


_ERROR_RE = re.compile(r"^(?:[\w.]+(?:Error|Exception|Interrupt|Exit)|error|slurmstepd: error)\b.*", re.I)


def last_error_line(path: Optional[str]) -> Optional[str]:
    """The last exception line of a job's stderr log (``OSError: no weights at /w``), if any."""
    found = None
    for line in _tail(path).splitlines():
        line = line.strip()
        if _ERROR_RE.match(line) and not line.startswith("submitit"):
            found = line
    if found and len(found) > 200:
        found = found[:197] + "..."
    return found

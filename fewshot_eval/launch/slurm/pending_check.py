"""Is a result's SLURM submission still queued or running, or must it be submitted again?

A result dir's submissions are recorded in up to three places; the newest one that covers the
planned trials counts:

* ``submitted.json`` in the result dir -- the job ids (written after sbatch; the job removes its entry
  when it finishes);
* the pool's record in ``<output_dir>/.slurm_submissions/`` (:mod:`fewshot_eval.store.submissions`) --
  durable, written before sbatch: the job ids once the pool was submitted, else the SLURM job name of
  an array whose submission was interrupted, to be found in the queue or in accounting;
* ``submitting.json`` in the result dir -- an interrupted submission of an older release (a job name).

What SLURM says decides::

    PENDING, RUNNING, REQUEUED, ...          -> (True,  "SLURM job 12_3 is RUNNING")       skip: pending
    FAILED, CANCELLED, TIMEOUT, ... unknown  -> (False, "resubmit: SLURM job 12_3 was CANCELLED")
    COMPLETED (but no complete result)       -> (False, "resubmit: SLURM job 12_3 COMPLETED without a complete result")
    an interrupted submission SLURM has      -> its jobs are adopted, then as above
    an interrupted submission SLURM never saw-> (False, "resubmit: ... never reached SLURM")
    squeue and sacct cannot be reached       -> (True,  "... cannot be reached ...")      run with override_completed=true
                                                (local launcher: not pending, the note says the marker is ignored)

FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL ... also return a failed attempt, which the planner counts
against ``max_failures`` (and a sweep that is not a dry run records in the result's ``failure.json``, once per
job id). The planner shows the note only when the job runs (a complete result is ``skip: complete``
whatever its marker says).

:class:`SchedulerView` is the planner's ``pending_check``: :meth:`~SchedulerView.prepare` reads the
records and the planned result dirs' markers and asks SLURM about all of them at once (one ``squeue``
and one ``sacct``: :meth:`SlurmStates.prefetch`). It is read-only: what it would write (adopted jobs
into ``submitted.json``, job ids into records, intents SLURM never saw dropped, records of ended
submissions removed, timeouts retitled) waits until :meth:`~SchedulerView.commit`, which only a sweep
that is not a dry run calls. Dry runs, ``status`` and ``report`` write nothing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from fewshot_eval.launch.slurm.job_states import (
    ACTIVE,
    FAILED_STATES,
    SlurmStates,
    SlurmUnreachable,
    last_error_line,
    log_paths,
    timed_out,
    why_pending,
)
from fewshot_eval.store import layout
from fewshot_eval.store.dir_listing import DirListing
from fewshot_eval.store.markers import INTENT, add_submissions, drop_intent, marker_jobs, read_intent, read_marker
from fewshot_eval.store.submissions import read_records, remove_record, task_dir, write_record

INTENT_GRACE_S = 120  # an interrupted submission younger than this may belong to a sweep still submitting: kept
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class Pending:
    """What SLURM says about a result dir's recorded submission."""

    pending: bool  # still queued or running: do not submit again
    note: str = ""  # why it is pending, or why it is submitted again ("resubmit: ...")
    failure: Optional[dict[str, Any]] = None  # a failed attempt to count: {job_id, error, log, retitle}
    unreachable: bool = False  # SLURM could not be asked
    writes: list[Callable[[], None]] = field(default_factory=list)  # what a sweep that is not a dry run records


@dataclass
class Recorded:
    """One task of a pool's submission record."""

    path: Path
    record: dict[str, Any]
    number: int  # the array's place in record["arrays"]
    task: dict[str, Any]

    @property
    def array(self) -> dict[str, Any]:
        return self.record["arrays"][self.number]


@dataclass
class Candidate:
    """One recorded submission of a result dir's trials: job ids, or a job name to look up."""

    at: datetime
    cluster: Optional[str]
    jobs: Optional[list[dict[str, Any]]]
    name: str = ""
    tasks: list[dict[str, Any]] = field(default_factory=list)  # [{index, trials}] of the named array
    single: bool = False
    folder: str = ""
    base: dict[str, Any] = field(default_factory=dict)  # marker fields of an adopted submission
    recorded: Optional[Recorded] = None
    intent: Optional[dict[str, Any]] = None


class RecordEdits:
    """Changes to submission records, applied once per record (:meth:`apply`)."""

    def __init__(self) -> None:
        self.ids: dict[Path, dict[int, Optional[str]]] = {}  # record -> {array number: job id, None = drop the array}
        self.removed: set[Path] = set()

    def set_id(self, path: Path, number: int, job_id: Optional[str]) -> None:
        self.ids.setdefault(path, {})[number] = job_id

    def apply(self) -> None:
        from fewshot_eval.store.atomic import read_json

        for path in self.removed:
            remove_record(path)
        for path, changes in self.ids.items():
            if path in self.removed:
                continue
            record = read_json(path)
            if not isinstance(record, dict) or not isinstance(record.get("arrays"), list):
                continue
            arrays = record["arrays"]
            for n, job_id in changes.items():
                if n < len(arrays) and job_id is not None and not arrays[n].get("job_id"):
                    arrays[n]["job_id"] = job_id
            kept = [a for n, a in enumerate(arrays) if not (n in changes and changes[n] is None and not a.get("job_id"))]
            if kept:
                write_record(path, {**record, "arrays": kept})
            else:
                remove_record(path)
        self.ids.clear()
        self.removed.clear()


def _time(value: Any) -> datetime:
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return _EPOCH
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _age_s(at: datetime) -> float:
    return (datetime.now(timezone.utc) - at).total_seconds()


def _covers(task_trials: Any, trials: Optional[Sequence[int]]) -> bool:
    return trials is None or task_trials is None or bool(set(task_trials) & set(trials))


def candidates(trials: Optional[Sequence[int]], marker: Optional[dict[str, Any]], intent: Optional[dict[str, Any]],
               recorded: Sequence[Recorded]) -> list[Candidate]:
    """Every recorded submission of these trials (see the module docstring)."""
    out = []
    names = set()
    if marker:
        jobs = marker_jobs(marker, trials)
        if jobs:
            out.append(Candidate(_time(marker.get("submitted_at")), marker.get("cluster"), jobs))
            names = {j.get("job_name") or marker.get("job_name") for j in jobs}
    for r in recorded:
        if not _covers(r.task.get("trials"), trials) or r.array.get("job_name") in names:  # the marker's own submission
            continue
        arr = r.array
        base = {"pool": r.record.get("pool"), "sweep_dir": r.record.get("sweep_dir")}
        tasks = [{"index": r.task.get("index", 0), "trials": r.task.get("trials")}]
        c = Candidate(_time(r.record.get("started_at")), r.record.get("cluster"), None, str(arr.get("job_name") or ""), tasks,
                      bool(arr.get("single")), str(arr.get("folder") or ""), base, recorded=r)
        if arr.get("job_id"):
            c.jobs = _jobs_of(c, str(arr["job_id"]))
        out.append(c)
    if intent:
        tasks = [t for t in intent.get("tasks") or [] if _covers(t.get("trials"), trials)]
        if tasks:
            out.append(Candidate(_time(intent.get("started_at")), intent.get("cluster"), None, str(intent["job_name"]), tasks,
                                 bool(intent.get("single")), str(intent.get("folder") or ""),
                                 {"pool": intent.get("pool"), "sweep_dir": intent.get("sweep_dir")}, intent=intent))
    return out


def _jobs_of(c: Candidate, array: str) -> list[dict[str, Any]]:
    jobs = []
    for t in c.tasks:
        job_id = array if c.single else f"{array}_{t['index']}"
        if c.folder and "%" not in c.folder:  # an array's own folder (submitit's names, without building its JobPaths)
            out, err = f"{c.folder}/{job_id}_0_log.out", f"{c.folder}/{job_id}_0_log.err"
        else:
            out, err = log_paths(c.folder, job_id)
        jobs.append({"job_id": job_id, "trials": t.get("trials"), "stdout": out, "stderr": err, "job_name": c.name})
    return jobs


def _newest_array(found: dict[str, str]) -> str:
    arrays = {j.split("_")[0] for j in found}
    return max(arrays, key=lambda a: int(a) if a.isdigit() else 0)


def pending_reason(result_dir: Path, trials: Optional[Sequence[int]] = None, override_completed: bool = False,
                   states: Optional[SlurmStates] = None, local_launcher: bool = False, *, marker: Any = False,
                   intent: Any = False, recorded: Sequence[Recorded] = (), edits: Optional[RecordEdits] = None) -> Pending:
    """SLURM's view of a result dir's recorded submissions; see the module docstring. With
    ``local_launcher`` a submission SLURM cannot be asked about is ignored (and the note says so).
    ``marker`` / ``intent``: as read already (False: read them here); ``recorded``: its records' tasks."""
    states = states or SlurmStates()
    marker = read_marker(result_dir) if marker is False else marker
    intent = (read_intent(result_dir) if (result_dir / INTENT).exists() else None) if intent is False else intent
    cands = candidates(trials, marker, intent, recorded)
    if not cands:
        return Pending(False)
    c = max(cands, key=lambda c: (c.at, c.jobs is not None))
    writes: list[Callable[[], None]] = []
    if c.jobs is None:  # an interrupted submission: find its jobs by their name
        try:
            found = states.by_name(c.name, c.cluster)
        except SlurmUnreachable as e:
            if local_launcher or override_completed:
                return Pending(False, f"ignoring an interrupted SLURM submission: SLURM cannot be reached ({e})", unreachable=True)
            return Pending(True, f"an interrupted SLURM submission: SLURM cannot be reached ({e}); treated as pending", unreachable=True)
        if not found:
            if _age_s(c.at) > INTENT_GRACE_S:
                writes.append(_forget(result_dir, c, edits))
            return Pending(False, f"resubmit: an interrupted submission ({c.name}) never reached SLURM", writes=writes)
        array = _newest_array(found)
        c.jobs = _jobs_of(c, array)
        writes.append(_adopt(result_dir, c, array, edits))
    seen = []
    for j in c.jobs:
        job_id = str(j["job_id"])
        try:
            state = states.state(job_id, c.cluster)
        except SlurmUnreachable as e:
            if local_launcher:
                return Pending(False, f"ignoring submitted.json of SLURM job {job_id}: SLURM cannot be reached from here ({e}); "
                                      f"the local launcher runs it", unreachable=True)
            if override_completed:
                return Pending(False, f"resubmit: SLURM job {job_id}: SLURM cannot be reached ({e}); override_completed=true", unreachable=True)
            return Pending(True, f"SLURM job {job_id}: SLURM cannot be reached ({e}); treated as pending "
                                 f"(override_completed=true runs it again)", unreachable=True)
        if state in ACTIVE:
            return Pending(True, f"SLURM job {job_id} is {state}{why_pending(states, job_id, state)}", writes=writes)
        seen.append((job_id, state, j))
    job_id, state, j = seen[0]
    if state is None:
        return Pending(False, f"resubmit: SLURM has no record of job {job_id} (cancelled while queued, or purged)", writes=writes)
    err_log = j.get("stderr") or (marker or {}).get("stderr")
    out_log = j.get("stdout") or (marker or {}).get("stdout")
    log = err_log or out_log
    if state == "COMPLETED":
        return Pending(False, f"resubmit: SLURM job {job_id} COMPLETED without a complete result (log: {log})", writes=writes)
    if state == "CANCELLED":
        return Pending(False, f"resubmit: SLURM job {job_id} was CANCELLED", writes=writes)
    timeouts = timed_out(state, [err_log, out_log])
    if timeouts:
        error = f"SLURM job {job_id} timed out {timeouts}× — raise timeout_min"
        writes.append(lambda: _retitle(result_dir, job_id, error))
        return Pending(False, f"resubmit: {error} (log: {log})", {"job_id": job_id, "error": error, "log": log, "retitle": True}, writes=writes)
    last = last_error_line(err_log) if state in FAILED_STATES else None
    why = f"; last error: {last}" if last else ""
    failure = {"job_id": job_id, "error": f"SLURM job {job_id} was {state}", "log": log} if state in FAILED_STATES else None
    return Pending(False, f"resubmit: SLURM job {job_id} was {state} (log: {log}){why}", failure, writes=writes)


def _adopt(result_dir: Path, c: Candidate, array: str, edits: Optional[RecordEdits]) -> Callable[[], None]:
    """The write that makes an interrupted submission's jobs this result dir's recorded ones."""
    assert c.jobs is not None
    jobs = list(c.jobs)
    marker = {"scheduler": "slurm", **c.base, "cluster": c.cluster, "job_name": c.name, "array_job_id": array, "adopted": True,
              "submitted_at": c.at.isoformat(), "submitit_folder": c.folder}

    def write() -> None:
        add_submissions(result_dir, marker, jobs)
        if c.intent is not None:
            drop_intent(result_dir, c.intent.get("token"))
        elif c.recorded is not None:
            _edit(edits, c.recorded, array)
    return write


def _forget(result_dir: Path, c: Candidate, edits: Optional[RecordEdits]) -> Callable[[], None]:
    """The write that drops an interrupted submission SLURM never saw."""
    def write() -> None:
        if c.intent is not None:
            drop_intent(result_dir, c.intent.get("token"))
        elif c.recorded is not None:
            _edit(edits, c.recorded, None)
    return write


def _edit(edits: Optional[RecordEdits], r: Recorded, job_id: Optional[str]) -> None:
    if edits is not None:
        edits.set_id(r.path, r.number, job_id)
    else:
        one = RecordEdits()
        one.set_id(r.path, r.number, job_id)
        one.apply()


def _retitle(result_dir: Path, job_id: str, error: str) -> None:
    """The job itself recorded its end as submitit's 'UncompletedJobError: Job not requeued because:
    timed-out too many times': name it for what it is, so the plan says what to change."""
    from fewshot_eval.store.failures import retitle_failure

    retitle_failure(result_dir, job_id, error)


class SchedulerView:
    """The planner's ``pending_check`` for one plan; see the module docstring."""

    def __init__(self, states: Optional[SlurmStates] = None) -> None:
        self.states = states or SlurmStates(ttl_s=math.inf)
        self.edits = RecordEdits()
        self.writes: list[Callable[[], None]] = []
        self.root: Optional[Path] = None
        self._dirs: set[Path] = set()
        self._markers: dict[Path, dict[str, Any]] = {}
        self._intents: dict[Path, dict[str, Any]] = {}
        self._recorded: dict[Path, list[Recorded]] = {}
        self.listing: Optional[DirListing] = None  # the plan's view of the tree (store/dir_listing.py), set by the planner

    def prepare(self, root: Path, result_dirs: Iterable[Path]) -> None:
        """Read what is recorded for these result dirs (and every pool record under ``root``) and ask
        SLURM about all of it at once."""
        self.root = Path(root)
        records = read_records(self.root)
        written: dict[Path, int] = {}  # record -> when it was last written (ns)
        for path, rec in records:
            try:
                written[path] = path.stat().st_mtime_ns
            except OSError:
                written[path] = 0
            for n, arr in enumerate(rec["arrays"]):
                for t in arr.get("tasks") or []:
                    d = task_dir(self.root, t)
                    if d is not None:
                        self._recorded.setdefault(d, []).append(Recorded(path, rec, n, t))
        for d in result_dirs:
            if d in self._dirs:
                continue
            self._dirs.add(d)
            if self.listing is not None:
                entries = self.listing.names(d)  # shared with the plan's status checks; a dir not there costs no call
                if entries is None:
                    continue
            else:
                try:
                    entries = frozenset(os.listdir(d))  # one call per dir (most are new: it does not exist)
                except OSError:
                    continue
            if layout.SUBMITTED in entries and not self._record_is_newer(d, written) and (m := read_marker(d)) is not None:
                self._markers[d] = m
            if INTENT in entries and (i := read_intent(d)) is not None:
                self._intents[d] = i
        ids = [(m.get("cluster"), str(j["job_id"])) for m in self._markers.values() for j in marker_jobs(m, None)]
        names = [(i.get("cluster"), str(i["job_name"])) for i in self._intents.values()]
        for _, rec in records:
            for arr in rec["arrays"]:
                if arr.get("job_id"):
                    ids.append((rec.get("cluster"), str(arr["job_id"])))
                elif arr.get("job_name"):
                    names.append((rec.get("cluster"), str(arr["job_name"])))
        if ids or names:
            self.states.prefetch(ids, names)
        self._plan_cleanup(records)

    def _record_is_newer(self, d: Path, written: dict[Path, int]) -> bool:
        """Is the dir's submitted.json no newer than a record with job ids for it? Then it holds nothing the
        record does not (a pool's record is rewritten with the job ids after its markers): not read."""
        recs = [r.path for r in self._recorded.get(d, ()) if r.array.get("job_id")]
        if not recs:
            return False
        try:
            return os.stat(d / layout.SUBMITTED).st_mtime_ns <= max(written.get(p, 0) for p in recs)
        except OSError:
            return False

    def _plan_cleanup(self, records: list[tuple[Path, dict[str, Any]]]) -> None:
        """Records all of whose jobs have ended are removed; arrays SLURM never saw are dropped (at commit)."""
        for path, rec in records:
            cluster = rec.get("cluster")
            live = False
            for n, arr in enumerate(rec["arrays"]):
                try:
                    job_id = str(arr.get("job_id") or "")
                    if not job_id:
                        found = self.states.by_name(str(arr.get("job_name")), cluster)
                        if not found:
                            if _age_s(_time(rec.get("started_at"))) > INTENT_GRACE_S:
                                self.edits.set_id(path, n, None)
                            else:
                                live = True
                            continue
                        job_id = _newest_array(found)
                        self.edits.set_id(path, n, job_id)
                    tasks = [job_id if arr.get("single") else f"{job_id}_{t.get('index', 0)}" for t in arr.get("tasks") or []]
                    live = live or any(self.states.state(t, cluster) in ACTIVE for t in tasks)
                except SlurmUnreachable:
                    live = True
            if not live:
                self.edits.removed.add(path)

    def has_submission(self, result_dir: Path) -> bool:
        """Is anything recorded for this result dir (so that SLURM must be asked)?"""
        if result_dir in self._dirs:
            return result_dir in self._markers or result_dir in self._intents or result_dir in self._recorded
        return (result_dir / layout.SUBMITTED).exists() or (result_dir / INTENT).exists() or result_dir in self._recorded

    def __call__(self, result_dir: Path, trials: Optional[Sequence[int]] = None, override_completed: bool = False,
                 local_launcher: bool = False) -> Pending:
        known = result_dir in self._dirs
        p = pending_reason(result_dir, trials, override_completed, self.states, local_launcher,
                           marker=self._markers.get(result_dir) if known else False,
                           intent=self._intents.get(result_dir) if known else False,
                           recorded=self._recorded.get(result_dir, ()), edits=self.edits)
        self.writes += p.writes
        return p

    def commit(self) -> None:
        """Write what the plan saw (a sweep that is not a dry run: never a dry run, ``status`` or ``report``)."""
        for w in self.writes:
            try:
                w()
            except OSError:  # a tree this user cannot write: seen for this plan only
                pass
        self.writes.clear()
        try:
            self.edits.apply()
        except OSError:
            pass

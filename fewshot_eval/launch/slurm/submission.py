"""Submitting the pools: every pool's arrays go to SLURM before anything is waited on.

    lock -> re-check (results finished meanwhile; SLURM asked once) -> the controller (scontrol, a probe)
    -> per pool: its arrays (at most MaxArraySize tasks each) in lanes (its max_parallel holds for the
       pool as a whole: pools.lanes), its record written durably (the intent: every array's job name,
       folder and tasks) -> per array: folder and pickled calls staged, sbatch (lanes side by side),
       the result dirs' submitted.json (no fsync) -> the record again, with the job ids -> summary

Durable writes do not grow with the number of jobs: per pool its shared pickle (``pool.pkl``) and its
record twice (:mod:`fewshot_eval.store.submissions`). A sweep killed at any instant loses nothing and
submits nothing twice: before a pool's record nothing of it was submitted; after it, the next sweep
finds every array of the record that reached SLURM (by the job id, or by the job name, which carries
the submission token), adopts it and submits only the rest; and an adopted task starts normally,
since everything it needs (its pickled call, its log folder) was written before its sbatch
(:mod:`fewshot_eval.launch.slurm.staged_executor`). Each job's line in ``<output_dir>/scheduled_jobs.jsonl``
is written once the pools are submitted.

A submission sbatch refuses leaves no files behind, and its error is printed once (the pool's ``NOT
submitted`` line). When SLURM's controller cannot be reached (its first answer is a probe with a short
timeout), the sweep says so in one line, submits nothing more and counts no job as failed
(``Outcome.NOT_SUBMITTED``; exit status 4). Submission holds ``<output_dir>/.slurm_submit.lock``: of
two sweeps started together on one output dir the second waits, then leaves out what the first
submitted, or what its jobs finished meanwhile.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus

from fewshot_eval.launch.batch import LaunchBatch
from fewshot_eval.launch.joblog import launch_row, log_launches
from fewshot_eval.launch.returns import failed_return
from fewshot_eval.launch.slurm.node_jobs import CombinedJobs, PoolCall, write_shared
from fewshot_eval.launch.slurm.pools import (
    Pool,
    chunks,
    cluster_name,
    executor_parameters,
    hydra_overrides,
    lanes,
    make_pools,
    max_array_size,
    pool_folder,
    pool_info,
    python_command,
    throttle,
)
from fewshot_eval.launch.slurm.probes import SlurmUnreachable
from fewshot_eval.launch.slurm.waiting import pool_line, summary, wait_for
from fewshot_eval.outcome import Outcome
from fewshot_eval.store.locks import locked
from fewshot_eval.store.markers import add_submissions
from fewshot_eval.store.submissions import record_path, remove_record, write_record

log = logging.getLogger("fewshot_eval")

JOB_DIR_KEY = "hydra.sweep.dir"
SUBMIT_LOCK = ".slurm_submit.lock"  # in <output_dir>: one sweep submits at a time
FAULT_ENV = "FEWSHOT_FAULT"  # "kill-after-sbatch": SIGKILL the sweep right after the first sbatch returns (tests)
SUBMITTERS = 4  # sbatch calls in flight at once (lanes of all pools side by side)


@dataclass
class ArraySubmission:
    """One job array of a pool (or the one job of a combined pool)."""

    number: int
    members: list[int]  # positions in the pool's members
    name: str  # SLURM job name: <name>-<pool>-<token>[-<number>]
    folder: Path  # .submitit/<pool>/<token>-<number>: exists before sbatch
    throttle: int  # its lane's share of the pool's max_parallel
    jobs: list[Any] = field(default_factory=list)
    state: str = "planned"  # planned | submitted | refused (sbatch said no) | unsent | unknown (SLURM stopped answering)
    error: Optional[BaseException] = None


@dataclass
class PoolSubmission:
    pool: Pool
    arrays: list[ArraySubmission] = field(default_factory=list)
    lanes: list[list[ArraySubmission]] = field(default_factory=list)
    native: dict[str, Any] = field(default_factory=dict)  # sbatch parameters (submitit's SlurmExecutor names)
    python: Optional[str] = None  # what starts the job's Python (a site's container wrapper); None: this Python
    base: Path = Path()
    base_existed: bool = True
    shared: Optional[Path] = None
    record: Optional[Path] = None
    refused: Optional[BaseException] = None


def marker(job: Any, pool: Pool, trials: list[int], sweep_dir: Path, job_num: int, job_name: str = "", cluster: Optional[str] = None) -> dict[str, Any]:
    """The ``submitted.json`` record of one submission (the planner reads ``job_id`` / ``jobs``)."""
    job_id = str(job.job_id)
    array_id, _, index = job_id.partition("_")
    return {
        "scheduler": "slurm",
        "cluster": cluster,
        "job_name": job_name,
        "job_id": job_id,
        "array_job_id": array_id,
        "array_index": int(index) if index else None,
        "trials": list(trials),
        "pool": pool.name,
        "combined": pool.combine,
        "submitted_at": datetime.now(timezone.utc).isoformat(),
        "submitted_from": socket.gethostname(),
        "submitit_folder": str(job.paths.folder),
        "stdout": str(job.paths.stdout),
        "stderr": str(job.paths.stderr),
        "sweep_dir": str(sweep_dir),
        "hydra_job_num": job_num,
    }


def left_out_meanwhile(batch: LaunchBatch) -> dict[int, str]:
    """Planned jobs not to submit after all (asked under the lock): another sweep's jobs completed them
    while this sweep waited for the lock, or another sweep submitted them (SLURM asked once)."""
    from fewshot_eval.launch.slurm.pending_check import SchedulerView
    from fewshot_eval.plan.planner import RUN

    view = SchedulerView()
    view.prepare(Path(batch.output_root), [pj.unit.result_dir for pj in batch.jobs])
    out: dict[int, str] = {}
    for i, pj in enumerate(batch.jobs):
        u = pj.unit
        if batch.planner is not None and batch.planner.disk_status(u) != RUN:
            out[i] = "completed meanwhile (by another sweep's job)"
        elif view.has_submission(u.result_dir):
            p = view(u.result_dir, u.trials)
            if p.pending and not p.unreachable:
                out[i] = f"submitted by another sweep meanwhile ({p.note})"
    view.commit()  # this sweep launches: what it saw of other sweeps' submissions is recorded
    return out


def launch_pools(launcher: Any, batch: LaunchBatch) -> list[JobReturn]:
    """Submit the pools, record every job, print a summary; with ``wait`` also wait for them.
    Submission holds ``<output_dir>/.slurm_submit.lock``: of two sweeps started together the second
    waits, then leaves out what the first submitted."""
    root = Path(batch.output_root)
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / SUBMIT_LOCK, wait=True):
        return _launch_pools(launcher, batch)


def _returned(overrides: list[str], value: dict[str, Any]) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = value
    return ret


def _launch_pools(launcher: Any, batch: LaunchBatch) -> list[JobReturn]:
    params: dict[str, Any] = dict(launcher.params)
    planned, root, job_overrides = batch.jobs, Path(batch.output_root), batch.overrides
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    returns: dict[int, JobReturn] = {}
    lines: list[str] = []
    meanwhile = left_out_meanwhile(batch)
    for i, why in meanwhile.items():
        returns[i] = _returned(job_overrides[i], {"status": Outcome.SKIPPED.value, "result_dir": str(planned[i].unit.result_dir), "note": why})
    for why in sorted({w.split(" (")[0] for w in meanwhile.values()}):
        n = sum(1 for w in meanwhile.values() if w.startswith(why))
        lines.append(f"  {n} job{'s' if n != 1 else ''} left out: {why}")
    todo = [i for i in range(len(planned)) if i not in meanwhile]
    try:
        size, cluster = max_array_size(), cluster_name()  # the controller's first answer: a probe
    except SlurmUnreachable as e:
        _not_submitted(e, todo, [], planned, job_overrides, returns, lines)
        return [returns[i] for i in range(len(job_overrides))]
    token = uuid.uuid4().hex[:8]
    subs = []
    for pool in make_pools(pool_info(batch)):
        pool.members = [i for i in pool.members if i not in meanwhile]
        if pool.members:
            subs.append(_prepare(pool, params, launcher, token, size, cluster, root, sweep_dir, planned, batch.site))
    _submit(subs, params, launcher, planned, job_overrides, sweep_dir, cluster)
    owner: dict[int, Any] = {}
    unreachable: list[int] = []
    why_unreachable: Optional[BaseException] = None
    pool_of = {i: sub.pool.name for sub in subs for i in sub.pool.members}
    for sub in subs:
        pool = sub.pool
        _finish(sub, root)
        sent = [a for a in sub.arrays if a.state == "submitted"]
        for a in sent:
            for k, job in zip(a.members, a.jobs):
                owner[pool.members[k]] = job
        lost = [pool.members[k] for a in sub.arrays if a.state in ("unknown", "unsent") and sub.refused is None for k in a.members]
        if lost:
            unreachable += lost
            why_unreachable = why_unreachable or next((a.error for a in sub.arrays if a.error is not None), None)
        if sub.refused is not None:
            e = sub.refused
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
            log.debug("pool %s: submission failed: %s", pool.name, e)
            n_sent = sum(len(a.members) for a in sent)
            left = [pool.members[k] for a in sub.arrays if a.state != "submitted" for k in a.members] if sub.arrays else list(pool.members)
            before = f" ({n_sent} submitted before)" if n_sent else ""
            lines.append(f"  pool {pool.name}: NOT submitted ({len(left)} jobs){before}: {msg}")  # the one place sbatch's error is shown
            for i in left:
                returns[i] = failed_return(job_overrides[i], RuntimeError(f"not submitted: sbatch refused pool {pool.name} (above)"))
        if sent:
            jobs = [j for a in sent for j in (a.jobs[:1] if pool.combine else a.jobs)]
            shown = Pool(pool.name, pool.limit, pool.resources, pool.combine, [pool.members[k] for a in sent for k in a.members])
            lines.append(pool_line(params, shown, jobs, size))
    log_launches(root, [launch_row(planned[i], type(launcher).__name__, job_id=str(job.job_id), pool=pool_of[i],
                                   stdout=str(job.paths.stdout)) for i, job in sorted(owner.items())])
    if owner or not unreachable:
        logs = Path(pool_folder(str(params["submitit_folder"]), "<pool>")).parent
        print(summary(lines, owner, logs, params, sum(1 for s in subs if any(a.state == "submitted" for a in s.arrays))))
    for i, job in owner.items():
        returns[i] = _returned(job_overrides[i], {"status": Outcome.SUBMITTED.value, "job_id": str(job.job_id),
                                                  "result_dir": str(planned[i].unit.result_dir)})
    if unreachable:
        _not_submitted(why_unreachable or SlurmUnreachable("sbatch did not answer"), unreachable, list(owner), planned, job_overrides,
                       returns, [] if owner else lines)
    if params.get("wait") and owner:
        try:
            returns.update(wait_for(owner, planned, job_overrides))
        except KeyboardInterrupt:
            print("\nfewshot-eval: stopped waiting. The SLURM jobs keep running and are recorded (submitted.json, "
                  "scheduled_jobs.jsonl); re-run the same command to see their state and collect what is missing.")
            raise SystemExit(130) from None
    return [returns[i] for i in range(len(job_overrides))]


def _not_submitted(e: BaseException, todo: list[int], sent: list[int], planned: list[Any], job_overrides: list[list[str]],
                   returns: dict[int, JobReturn], lines: list[str]) -> None:
    """SLURM cannot be reached: one line; the jobs not submitted are not counted as failed."""
    for line in lines:
        print(line)
    before = f"; {len(sent)} were submitted before" if sent else ""
    print(f"fewshot-eval: SLURM cannot be reached ({e}): {len(todo)} job{'s' if len(todo) != 1 else ''} not submitted, none counted "
          f"as failed{before}. Re-run the same command once the controller answers (an interrupted submission is found and adopted).")
    for i in todo:
        returns[i] = _returned(job_overrides[i], {"status": Outcome.NOT_SUBMITTED.value, "reason": f"SLURM cannot be reached ({e})",
                                                  "result_dir": str(planned[i].unit.result_dir)})


def _prepare(pool: Pool, params: dict[str, Any], launcher: Any, token: str, size: int, cluster: Optional[str], root: Path,
             sweep_dir: Path, planned: list[Any], site: Any = None) -> PoolSubmission:
    """A pool's arrays and lanes, its shared pickle and its durable record: everything before its first sbatch."""
    from fewshot_eval.launch.slurm.staged_executor import native_parameters

    sub = PoolSubmission(pool, python=python_command(site))  # a site's container wrapper / Python
    folder = pool_folder(str(params["submitit_folder"]), pool.name)
    sub.base = (Path(folder.split("%j")[0]) if "%j" in folder else Path(folder)).absolute()
    try:
        sub.native = native_parameters(folder, executor_parameters(params, pool, site), int(params.get("max_num_timeout") or 0))
    except Exception as e:  # noqa: BLE001 - a bad option: these jobs fail, other pools go on
        sub.refused = e
        return sub
    parts = [list(range(len(pool.members)))] if pool.combine else chunks(list(range(len(pool.members))), size)
    name = f"{params.get('name') or 'fewshot'}-{pool.name}-{token}"
    budget = 1 if pool.combine else throttle(params, pool)
    by_number: dict[int, ArraySubmission] = {}
    for limit, numbers in lanes(len(parts), budget):
        lane = []
        for c in numbers:
            by_number[c] = ArraySubmission(c, parts[c], name if c == 0 else f"{name}-{c}", sub.base / f"{token}-{c}", limit)
            lane.append(by_number[c])
        sub.lanes.append(lane)
    sub.arrays = [by_number[c] for c in sorted(by_number)]
    sub.base_existed = sub.base.exists()
    sub.base.mkdir(parents=True, exist_ok=True)
    if not pool.combine:
        sub.shared = write_shared(sub.base, launcher, Singleton.get_state())
    rel = {}
    for a in sub.arrays:
        for k in a.members:
            u = planned[pool.members[k]].unit
            rel[k] = os.path.relpath(u.result_dir, root)
    sub.record = record_path(root, token, pool.name)
    write_record(sub.record, {
        "token": token, "pool": pool.name, "cluster": cluster, "started_at": datetime.now(timezone.utc).isoformat(),
        "submitted_from": socket.gethostname(), "sweep_dir": str(sweep_dir),
        "arrays": [{"job_name": a.name, "folder": str(a.folder), "single": pool.combine or len(a.members) == 1, "job_id": None,
                    "tasks": [{"index": 0 if pool.combine else n, "result_dir": rel[k], "trials": list(planned[pool.members[k]].unit.trials)}
                              for n, k in enumerate(a.members)]} for a in sub.arrays]})
    return sub


def _submit(subs: list[PoolSubmission], params: dict[str, Any], launcher: Any, planned: list[Any], job_overrides: list[list[str]],
            sweep_dir: Path, cluster: Optional[str]) -> None:
    """sbatch every array: the lanes of all pools side by side, each lane's arrays one after the other."""
    stop = threading.Event()  # SLURM stopped answering: no more sbatch
    marker_lock = threading.Lock()
    fault = os.environ.get(FAULT_ENV) == "kill-after-sbatch"

    def lane_run(sub: PoolSubmission, lane: list[ArraySubmission]) -> None:
        before: Optional[ArraySubmission] = None
        for a in lane:
            if stop.is_set() or sub.refused is not None:
                a.state = "unsent"
                continue
            try:
                a.jobs = _sbatch(sub, a, before, params, launcher, planned, job_overrides)
            except SlurmUnreachable as e:
                a.state, a.error = "unknown", e
                stop.set()
                continue
            except Exception as e:  # noqa: BLE001 - sbatch refused (bad partition, account, too many jobs ...)
                a.state, a.error = "refused", e
                sub.refused = sub.refused or e
                continue
            a.state = "submitted"
            if fault:
                os.kill(os.getpid(), signal.SIGKILL)
            _mark(sub, a, planned, sweep_dir, cluster, marker_lock)
            before = a

    work = [(sub, lane) for sub in subs if sub.refused is None for lane in sub.lanes]
    with ThreadPoolExecutor(max_workers=SUBMITTERS, thread_name_prefix="fewshot-sbatch") as ex:
        futures = [ex.submit(lane_run, sub, lane) for sub, lane in work]
        try:
            for f in futures:
                f.result()
        except BaseException:  # Ctrl-C: the lanes stop after their current sbatch (whose job is recorded)
            stop.set()
            raise


def _sbatch(sub: PoolSubmission, a: ArraySubmission, before: Optional[ArraySubmission], params: dict[str, Any], launcher: Any,
            planned: list[Any], job_overrides: list[list[str]]) -> list[Any]:
    """One array: its folder and pickled calls, then sbatch (after the array before it in its lane, if any)."""
    from fewshot_eval.launch.slurm.staged_executor import StagedSlurmExecutor

    pool = sub.pool
    a.folder.mkdir(parents=True, exist_ok=True)
    native = dict(sub.native, job_name=a.name, array_parallelism=a.throttle)
    if before is not None:  # one lane: this array starts once the one before it has ended (max_parallel for the pool)
        extra = dict(native.get("additional_parameters") or {})
        deps = [f"afterany:{str(before.jobs[0].job_id).split('_')[0]}", native.get("dependency"), extra.pop("dependency", None)]
        native["dependency"] = ",".join(d for d in deps if d)
        native["additional_parameters"] = extra
    ex = StagedSlurmExecutor(a.folder, native, max_num_timeout=int(params.get("max_num_timeout") or 0), python=sub.python)
    extra_ovr = hydra_overrides(params, pool)
    nums = [pool.members[k] for k in a.members]
    ovrs = [list(job_overrides[i]) + extra_ovr for i in nums]
    if pool.combine:
        return [ex.submit(CombinedJobs(launcher), ovrs, JOB_DIR_KEY, nums, Singleton.get_state())] * len(nums)
    return ex.map_array(PoolCall(str(sub.shared)), ovrs, [JOB_DIR_KEY] * len(nums), nums, [f"job_id_for_{n}" for n in nums])


def _mark(sub: PoolSubmission, a: ArraySubmission, planned: list[Any], sweep_dir: Path, cluster: Optional[str], lock: threading.Lock) -> None:
    """The submitted array's jobs into their result dirs' submitted.json (not fsynced: the record is durable)."""
    by_dir: dict[Path, list[dict[str, Any]]] = {}
    for k, job in zip(a.members, a.jobs):
        i = sub.pool.members[k]
        u = planned[i].unit
        by_dir.setdefault(u.result_dir, []).append(marker(job, sub.pool, u.trials, sweep_dir, i, a.name, cluster))
    with lock:  # split trials: one result dir's tasks can be in arrays of several lanes
        for rdir, entries in by_dir.items():
            add_submissions(rdir, entries[0], [{k: e[k] for k in ("job_id", "trials", "stdout", "stderr", "job_name")} for e in entries])


def _finish(sub: PoolSubmission, root: Path) -> None:
    """The record again, with the job ids (durable); what did not go out leaves no files behind."""
    for a in sub.arrays:
        if a.state in ("refused", "unsent", "planned"):
            shutil.rmtree(a.folder, ignore_errors=True)
    kept = [a for a in sub.arrays if a.state in ("submitted", "unknown")]
    if sub.record is not None:
        from fewshot_eval.store.atomic import read_json

        record = read_json(sub.record)
        if kept and isinstance(record, dict):
            ids = {a.name: str(a.jobs[0].job_id).split("_")[0] if a.state == "submitted" else None for a in kept}
            record["arrays"] = [{**r, "job_id": ids[r["job_name"]]} for r in record["arrays"] if r["job_name"] in ids]
            write_record(sub.record, record)
        elif not kept:
            remove_record(sub.record)
    if not kept:  # nothing went out: the pool's files go too
        if sub.shared is not None:
            sub.shared.unlink(missing_ok=True)
        if not sub.base_existed:
            try:
                sub.base.rmdir()
            except OSError:
                pass

"""Submitting the pools: every pool's array is submitted before anything is waited on.

A pool larger than the cluster's ``MaxArraySize`` is submitted as several arrays of at most that
many tasks; their jobs are recorded like those of one array. A submission that sbatch refuses
leaves no files behind (the pickles and scripts it wrote are removed).

Each job is recorded twice: a ``submitted.json`` marker in its result dir (:func:`marker`; the next
sweep's planner asks SLURM about it through :mod:`fewshot_eval.launch.slurm.job_states`, the job
deletes it when it finishes) and a line with its job id in ``<output_dir>/scheduled_jobs.jsonl``.
Before sbatch, an intent (``submitting.json``) names the SLURM job name, so that a sweep killed
between sbatch and the marker leaves jobs the next plan can adopt.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus

from fewshot_eval.launch.batch import LaunchBatch
from fewshot_eval.launch.joblog import log_launch
from fewshot_eval.launch.returns import failed_return
from fewshot_eval.launch.slurm.node_jobs import CombinedJobs, PoolCall, write_shared
from fewshot_eval.launch.slurm.pools import Pool, chunks, cluster_name, executor_parameters, hydra_overrides, make_pools, max_array_size, pool_folder, pool_info, python_command
from fewshot_eval.launch.slurm.waiting import pool_line, summary, wait_for
from fewshot_eval.outcome import Outcome
from fewshot_eval.store import layout
from fewshot_eval.store.atomic import write_json
from fewshot_eval.store.locks import locked
from fewshot_eval.store.markers import INTENT, drop_intent, write_intent

log = logging.getLogger("fewshot_eval")

JOB_DIR_KEY = "hydra.sweep.dir"


def _entries(folder: Path) -> set[Path]:
    try:
        return set(folder.iterdir())
    except OSError:
        return set()


def remove_new_files(folder: Path, before: set[Path], existed: bool) -> None:
    """Undo a refused submission: what submitit wrote into the pool folder since ``before``."""
    for e in _entries(folder) - before:
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e, ignore_errors=True)
        else:
            e.unlink(missing_ok=True)
    if not existed:
        try:
            folder.rmdir()
        except OSError:
            pass


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
        "submitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "submitted_from": socket.gethostname(),
        "submitit_folder": str(job.paths.folder),
        "stdout": str(job.paths.stdout),
        "stderr": str(job.paths.stderr),
        "sweep_dir": str(sweep_dir),
        "hydra_job_num": job_num,
    }


SUBMIT_LOCK = ".slurm_submit.lock"  # in <output_dir>: one sweep submits at a time
FAULT_ENV = "FEWSHOT_FAULT"  # "kill-after-sbatch": SIGKILL the sweep right after sbatch returns (tests)


def submitted_meanwhile(pj: Any, states: Any) -> Optional[str]:
    """Why a planned job must not be submitted after all: another sweep submitted it between this
    sweep's plan and its submission lock. ``states``: a SlurmStates made after taking the lock."""
    from fewshot_eval.launch.slurm.job_states import SlurmUnreachable, pending_reason

    u = pj.unit
    if not ((u.result_dir / layout.SUBMITTED).exists() or (u.result_dir / INTENT).exists()):
        return None
    try:
        p = pending_reason(u.result_dir, u.trials, False, states=states)
    except SlurmUnreachable:
        return None
    return p.note if p.pending else None


def launch_pools(launcher: Any, batch: LaunchBatch) -> list[JobReturn]:
    """Submit one array per pool, record every job, print a summary; with ``wait`` also wait for them.
    Submission holds ``<output_dir>/.slurm_submit.lock``: of two sweeps started together the second
    waits, then leaves out what the first submitted."""
    root = Path(batch.output_root)
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / SUBMIT_LOCK, wait=True):
        return _launch_pools(launcher, batch)


def _launch_pools(launcher: Any, batch: LaunchBatch) -> list[JobReturn]:
    import submitit

    params: dict[str, Any] = dict(launcher.params)
    planned, root = batch.jobs, Path(batch.output_root)
    job_overrides, initial_job_idx = batch.overrides, 0
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    state = Singleton.get_state()
    owner: dict[int, Any] = {}  # job index -> submitit job
    returns: dict[int, JobReturn] = {}
    lines = []
    from fewshot_eval.launch.slurm.job_states import SlurmStates

    fresh = SlurmStates(ttl_s=600)  # asked now, under the lock: one squeue (+ sacct) per array
    meanwhile = {i: why for i, pj in enumerate(planned) if (why := submitted_meanwhile(pj, fresh))}
    for i, why in meanwhile.items():
        ret = JobReturn(overrides=list(job_overrides[i]), status=JobStatus.COMPLETED)
        ret.return_value = {"status": Outcome.SKIPPED.value, "result_dir": str(planned[i].unit.result_dir), "note": why}
        returns[i] = ret
    if meanwhile:
        lines.append(f"  {len(meanwhile)} job{'s' if len(meanwhile) != 1 else ''} left out: submitted by another sweep meanwhile")
    pools = []
    for pool in make_pools(pool_info(batch)):
        pool.members = [i for i in pool.members if i not in meanwhile]
        if pool.members:
            pools.append(pool)
    token = uuid.uuid4().hex[:8]
    cluster = cluster_name()
    for pool in pools:
        nums = [initial_job_idx + i for i in pool.members]
        extra = hydra_overrides(params, pool)
        ovrs = [list(job_overrides[i]) + extra for i in pool.members]
        folder = pool_folder(str(params["submitit_folder"]), pool.name)
        python = {"slurm_python": cmd} if (cmd := python_command(batch.site)) else {}  # a site's container wrapper / Python
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=int(params.get("max_num_timeout") or 0), **python)
        base = Path(folder.split("%j")[0]) if "%j" in folder else Path(folder)
        jobs, refused = [], None
        try:
            ex.update_parameters(**executor_parameters(params, pool, batch.site))
        except Exception as e:  # noqa: BLE001 - a bad option: these jobs fail, other pools go on
            refused = (list(range(len(nums))), e)
        size = len(nums) if pool.combine else max_array_size()
        job_name = f"{params.get('name') or 'fewshot'}-{pool.name}-{token}"
        shared: Optional[Path] = None
        if not refused and not pool.combine:
            base_existed = base.exists()
            base.mkdir(parents=True, exist_ok=True)
            shared = write_shared(base, launcher, state)
        markers: dict[Path, list[dict[str, Any]]] = {}
        for c, part in enumerate([] if refused else chunks(list(range(len(nums))), size)):
            existed, before = base.exists(), _entries(base)
            name = job_name if c == 0 else f"{job_name}-{c}"
            intents: dict[Path, dict[str, Any]] = {}
            for k in part:  # the intent, before sbatch: a kill after it leaves a job name to find
                u = planned[pool.members[k]].unit
                it = intents.setdefault(u.result_dir, {"job_name": name, "token": token, "pool": pool.name, "folder": folder,
                                                       "single": pool.combine or len(part) == 1, "cluster": cluster,
                                                       "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                                       "sweep_dir": str(sweep_dir), "tasks": []})
                it["tasks"].append({"index": part.index(k), "trials": list(u.trials)})
            for rdir, it in intents.items():
                write_intent(rdir, it)
            try:
                ex.update_parameters(name=name)
                if pool.combine:
                    got = [ex.submit(CombinedJobs(launcher), ovrs, JOB_DIR_KEY, nums, state)] * len(nums)
                else:
                    sub = [nums[k] for k in part]
                    got = ex.map_array(PoolCall(str(shared)), [ovrs[k] for k in part], [JOB_DIR_KEY] * len(sub), sub,
                                       [f"job_id_for_{n}" for n in sub])
            except Exception as e:  # noqa: BLE001 - sbatch refused (bad partition, account, too many jobs ...)
                remove_new_files(base, before, existed)
                for rdir in intents:
                    drop_intent(rdir, token)
                refused = (list(range(len(jobs), len(nums))), e)
                break
            if os.environ.get(FAULT_ENV) == "kill-after-sbatch":
                os.kill(os.getpid(), signal.SIGKILL)
            touched = set()
            for k, job in zip(part if not pool.combine else range(len(nums)), got):
                i = pool.members[k]
                owner[i] = job
                pj = planned[i]
                markers.setdefault(pj.unit.result_dir, []).append(marker(job, pool, pj.unit.trials, sweep_dir, nums[k], name, cluster))
                touched.add(pj.unit.result_dir)
                log_launch(root, pj, type(launcher).__name__, job_id=str(job.job_id), pool=pool.name, stdout=str(job.paths.stdout))
            for rdir in touched:  # split_trials: several submissions share a result dir
                entries = markers[rdir]
                write_json(rdir / layout.SUBMITTED, {**entries[0], "jobs": [{k: e[k] for k in ("job_id", "trials", "stdout", "stderr")} for e in entries]})
                drop_intent(rdir, token)
            jobs += got
        if shared is not None and not jobs:  # nothing went out: no files left behind
            remove_new_files(base, set(), base_existed)
        if refused:
            left, e = refused
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
            log.debug("pool %s: submission failed: %s", pool.name, e)
            done = f" ({len(jobs)} submitted before)" if jobs else ""
            lines.append(f"  pool {pool.name}: NOT submitted ({len(left)} jobs){done}: {msg}")  # the one place sbatch's error is shown
            for k in left:
                returns[pool.members[k]] = failed_return(job_overrides[pool.members[k]], RuntimeError(f"not submitted: sbatch refused pool {pool.name} (above)"))
            if not jobs:
                continue
            pool = Pool(pool.name, pool.limit, pool.resources, pool.combine, pool.members[:len(jobs)])
        lines.append(pool_line(params, pool, jobs))
    print(summary(lines, owner, Path(pool_folder(str(params["submitit_folder"]), "<pool>")).parent, params))
    if not params.get("wait"):
        for i, job in owner.items():
            ret = JobReturn(overrides=list(job_overrides[i]), status=JobStatus.COMPLETED)
            ret.return_value = {"status": Outcome.SUBMITTED.value, "job_id": str(job.job_id), "result_dir": str(planned[i].unit.result_dir)}
            returns[i] = ret
        return [returns[i] for i in range(len(job_overrides))]
    try:
        returns.update(wait_for(owner, planned, job_overrides))
    except KeyboardInterrupt:
        print("\nfewshot-eval: stopped waiting. The SLURM jobs keep running and are recorded (submitted.json, "
              "scheduled_jobs.jsonl); re-run the same command to see their state and collect what is missing.")
        raise SystemExit(130) from None
    return [returns[i] for i in range(len(job_overrides))]

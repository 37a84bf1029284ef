"""SLURM launch: one submitit job array per model setting (a "pool"), submit-and-return by default.

    model=random,majority task=copa_demo,nli_demo,story_demo  ->  6 jobs, 2 pools:
        pool random:   array 101, tasks 101_0..101_2, random's resources, %<random's max_parallel>
        pool majority: array 102, tasks 102_0..102_2, majority's resources, %<majority's max_parallel>

A pool larger than the cluster's ``MaxArraySize`` (``scontrol show config``) is submitted as several
arrays of at most that many tasks; their jobs are recorded like those of one array. A submission
that sbatch refuses leaves no files behind (the pickles and scripts it wrote are removed).

Every pool is submitted before anything is waited on. Each job is recorded twice: a
``submitted.json`` marker in its result dir (:func:`marker`; the next sweep's planner asks SLURM
about it through ``fewshot_eval.launch.slurm_states``, the job deletes it when it finishes) and a line
with its job id in ``<output_dir>/scheduled_jobs.jsonl``. A model setting with
``job.combine_tasks: true`` runs all its jobs in one SLURM job (:class:`CombinedJobs`).

A SLURM job of several tasks (``resources.tasks_per_node`` > 1 or ``nodes`` > 1) runs one
evaluation: submitit starts the payload in every task, and only rank 0 runs it
(:func:`task_rank`); the other tasks log that and exit at once. A backend that needs the other
nodes (vLLM over Ray, ``fewshot_eval/evaluate/backends/ray_slurm.sh``) starts its own processes there.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import uuid
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus

from fewshot_eval.launch.batch import LaunchBatch
from fewshot_eval.launch.joblog import log_launch
from fewshot_eval.launch.local import failed_return
from fewshot_eval.outcome import Outcome
from fewshot_eval.store import layout
from fewshot_eval.store.atomic import write_json
from fewshot_eval.store.locks import locked
from fewshot_eval.store.markers import INTENT, drop_intent, write_intent
from fewshot_eval.store.status import COMPLETE, result_status

log = logging.getLogger("fewshot_eval")

RESOURCE_KEYS = ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb", "timeout_min")
# launcher options that are not passed to sbatch as they are
OWN_KEYS = ("submitit_folder", "max_num_timeout", "array_parallelism", "name", "stderr_to_stdout", "wait", "mail_type", "mail_user")
JOB_DIR_KEY = "hydra.sweep.dir"


@dataclass
class Pool:
    """The jobs of one model setting (with one set of resources): one job array."""

    name: str
    limit: int  # array throttle: the model's max_parallel, or the run param max_parallel
    resources: dict[str, Any]
    combine: bool
    members: list[int] = field(default_factory=list)  # indices into the sweep's jobs
    slurm: dict[str, Any] = field(default_factory=dict)  # the model's scheduler options (settings.SlurmOptions)


def make_pools(pool_info: Sequence[dict[str, Any]]) -> list[Pool]:
    """Group jobs by model setting (and resources, throttle, combine flag), in order of first appearance."""
    pools: dict[str, Pool] = {}
    names: set[str] = set()
    for i, info in enumerate(pool_info):
        key = json.dumps([info["pool"], info["resources"], info["max_parallel"], info["combine_tasks"], info.get("slurm") or {}], sort_keys=True)
        if key not in pools:
            name, n = info["pool"], 2
            while name in names:  # the same model setting with other resources (e.g. model.resources.x=...)
                name, n = f"{info['pool']}-{n}", n + 1
            names.add(name)
            pools[key] = Pool(name, int(info["max_parallel"]), dict(info["resources"]), bool(info["combine_tasks"]),
                              slurm=dict(info.get("slurm") or {}))
        pools[key].members.append(i)
    return list(pools.values())


DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default
_config: dict[str, str] = {}


def slurm_config() -> dict[str, str]:
    """``scontrol show config`` as a dict, asked once per process ({} when it cannot be asked)."""
    if not _config:
        try:
            out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=15).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                _config[k.strip()] = v.strip()
        _config.setdefault("_asked", "1")
    return _config


def max_array_size() -> int:
    """The cluster's ``MaxArraySize`` (an array's indices run 0 .. MaxArraySize-1)."""
    try:
        return max(1, int(slurm_config().get("MaxArraySize", DEFAULT_MAX_ARRAY_SIZE)))
    except ValueError:
        return DEFAULT_MAX_ARRAY_SIZE


def cluster_name() -> Optional[str]:
    """The ClusterName of the cluster sbatch submits to; recorded in every marker."""
    return slurm_config().get("ClusterName") or None


def chunks(members: Sequence[int], size: int) -> list[list[int]]:
    return [list(members[i:i + size]) for i in range(0, len(members), size)] or [[]]


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


def pool_resources(params: dict[str, Any], pool: Pool) -> dict[str, Any]:
    """A launcher value (set on the command line or in the yaml) wins over the model setting's resources."""
    return {k: params.get(k) if params.get(k) is not None else pool.resources.get(k) for k in RESOURCE_KEYS}


def throttle(params: dict[str, Any], pool: Pool) -> int:
    return max(1, min(pool.limit, int(params.get("array_parallelism") or pool.limit)))


def executor_parameters(params: dict[str, Any], pool: Pool) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` arguments of one pool."""
    res = pool_resources(params, pool)
    out: dict[str, Any] = {
        "name": f"{params.get('name') or 'fewshot'}-{pool.name}",
        "timeout_min": res["timeout_min"],
        "nodes": res["nodes"],
        "tasks_per_node": res["tasks_per_node"],
        "cpus_per_task": res["cpus_per_task"],
        "stderr_to_stdout": bool(params.get("stderr_to_stdout")),
        "slurm_array_parallelism": throttle(params, pool),
    }
    if res["gpus_per_node"]:
        out["gpus_per_node"] = res["gpus_per_node"]
    if res["mem_gb"]:
        out["mem_gb"] = res["mem_gb"]
    if params.get("mail_type") and str(params["mail_type"]).upper() != "NONE":
        out["slurm_mail_type"] = params["mail_type"]
        if params.get("mail_user"):
            out["slurm_mail_user"] = params["mail_user"]
    for k, v in params.items():
        if k not in RESOURCE_KEYS and k not in OWN_KEYS and k != "_target_" and v is not None and v != {}:
            out[f"slurm_{k}"] = v
    model = pool.slurm or {}
    for k in ("partition", "account", "qos", "constraint", "gres"):  # the model's, unless hydra.launcher.<k> is set
        if model.get(k) and params.get(k) is None:
            out[f"slurm_{k}"] = model[k]
    if model.get("exclusive") and params.get("exclusive") is None:
        out["slurm_exclusive"] = True
    if model.get("sbatch"):
        out["slurm_additional_parameters"] = {**model["sbatch"], **(params.get("additional_parameters") or {})}
    if model.get("setup"):
        out["slurm_setup"] = list(params.get("setup") or []) + list(model["setup"])
    return out


def hydra_overrides(params: dict[str, Any], pool: Pool) -> list[str]:
    """What a pool's jobs got, as overrides of the launcher config: ``.hydra/hydra.yaml`` of each job shows them."""
    res = pool_resources(params, pool)
    out = [f"hydra.launcher.{k}={res[k]}" for k in RESOURCE_KEYS if res[k] is not None]
    return out + [f"hydra.launcher.array_parallelism={throttle(params, pool)}"]


def pool_folder(template: str, pool: str) -> str:
    """``<sweep>/.submitit/%j`` -> ``<sweep>/.submitit/<pool>/%j``: one folder per pool, one subfolder per job."""
    return template.replace("%j", f"{pool}/%j") if "%j" in template else str(Path(template) / pool / "%j")


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


def task_rank() -> tuple[int, int]:
    """(global rank, number of tasks) of this process in its submitit job; (0, 1) outside one."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        return env.global_rank, env.num_tasks
    except RuntimeError:  # not in a submitit job
        return 0, 1


def follower_return(overrides: Sequence[str], rank: int, ntasks: int, say: bool = True) -> JobReturn:
    """What a task of rank > 0 returns without running anything: rank 0 evaluates and writes."""
    if say:
        print(f"fewshot-eval: task rank {rank} of {ntasks}: rank 0 runs this job and writes its results; "
              f"this task does nothing and exits", flush=True)
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = {"status": Outcome.SKIPPED.value, "reason": f"task rank {rank}: rank 0 runs it"}
    return ret


class CombinedJobs:
    """One SLURM job that runs several jobs of one model setting in one process, one after the other.

    Each job still writes its own result dir and skips itself when complete. The SLURM job fails
    (after running all of them) when one of them failed, so the next sweep resubmits those."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def __call__(self, overrides: list[list[str]], job_dir_key: str, job_nums: list[int], singleton_state: Any) -> list[JobReturn]:
        rank, ntasks = task_rank()
        if rank:
            return [follower_return(o, rank, ntasks, say=k == 0) for k, o in enumerate(overrides)]
        returns, failed = [], []
        for ovr, num in zip(overrides, job_nums):
            try:
                ret = self.launcher(ovr, job_dir_key, num, f"job_id_for_{num}", singleton_state)
            except Exception as e:  # noqa: BLE001 - the others still run
                log.exception("job %d of a combined SLURM job failed (%s)", num, " ".join(ovr))
                ret = failed_return(ovr, e)
                failed.append((num, e))
            returns.append(ret)
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(overrides)} combined jobs failed: " + "; ".join(f"job {n}: {e}" for n, e in failed))
        return returns

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue after timeout/preemption with the same jobs; the finished ones skip themselves."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class PoolCall:
    """One array task's payload: its overrides and job number, plus the path of the pool's shared pickle
    (the launcher and Hydra's singleton state, written once per pool: ``.submitit/<pool>/pool.pkl``).
    Shipping the launcher and the state with every task cost ~53 KB per job (5,000 jobs: 265 MB)."""

    _loaded: dict[str, Any] = {}

    def __init__(self, shared: str) -> None:
        self.shared = shared

    def __call__(self, overrides: list[str], job_dir_key: str, job_num: int, job_id: str) -> Any:
        rank, ntasks = task_rank()
        if rank:
            return follower_return(overrides, rank, ntasks)
        if self.shared not in PoolCall._loaded:
            import pickle

            with open(self.shared, "rb") as f:
                PoolCall._loaded[self.shared] = pickle.load(f)
        launcher, state = PoolCall._loaded[self.shared]
        return launcher(overrides, job_dir_key, job_num, job_id, state)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue after timeout/preemption with the same arguments; finished trials skip themselves."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def write_shared(base: Path, launcher: Any, state: Any) -> Path:
    import cloudpickle

    from fewshot_eval.store.atomic import write_bytes

    path = base / "pool.pkl"
    write_bytes(path, cloudpickle.dumps((launcher, state)))
    return path


def job_resources(unit: Any) -> dict[str, Any]:
    """The model setting's resources; no GPU for a predictor that uses none (a served model, a baseline)."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_class

    res = dict(unit.model["resources"])
    if res.get("gpus_per_node") and not predictor_class(unit.params["predictor"], config_dirs()).uses_gpus:
        res["gpus_per_node"] = 0
    return res


def pool_info(batch: LaunchBatch) -> list[dict[str, Any]]:
    """Per job: its pool (model setting), throttle, resources and combine flag."""
    return [
        {"pool": j.unit.model_key, "max_parallel": batch.pool_limit(i), "resources": job_resources(j.unit),
         "combine_tasks": bool(j.unit.model["job"]["combine_tasks"]), "slurm": dict(j.unit.model.get("slurm") or {})}
        for i, j in enumerate(batch.jobs)
    ]


SUBMIT_LOCK = ".slurm_submit.lock"  # in <output_dir>: one sweep submits at a time
FAULT_ENV = "FEWSHOT_FAULT"  # "kill-after-sbatch": SIGKILL the sweep right after sbatch returns (tests)


def submitted_meanwhile(pj: Any, states: Any) -> Optional[str]:
    """Why a planned job must not be submitted after all: another sweep submitted it between this
    sweep's plan and its submission lock. ``states``: a SlurmStates made after taking the lock."""
    from fewshot_eval.launch.slurm_states import SlurmUnreachable, pending_reason

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
    from fewshot_eval.launch.slurm_states import SlurmStates

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
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=int(params.get("max_num_timeout") or 0))
        base = Path(folder.split("%j")[0]) if "%j" in folder else Path(folder)
        jobs, refused = [], None
        try:
            ex.update_parameters(**executor_parameters(params, pool))
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


def wait_for(owner: dict[int, Any], planned: Sequence[Any], job_overrides: Sequence[Sequence[str]]) -> dict[int, JobReturn]:
    """Each job's JobReturn once its SLURM job has ended (a combined job answers for all its jobs)."""
    out: dict[int, JobReturn] = {}
    done: dict[str, Any] = {}
    for i, job in owner.items():
        if job.job_id not in done:
            try:
                done[job.job_id] = job.results()[0]
            except Exception as e:  # noqa: BLE001 - failed, cancelled, timed out: reported per job
                done[job.job_id] = RuntimeError(f"SLURM job {job.job_id}: {error_line(e)} (log: {job.paths.stderr})")
        res = done[job.job_id]
        if isinstance(res, list):  # combined: one JobReturn per job, in submission order
            members = [k for k, j in owner.items() if j is job]
            res = res[members.index(i)]
        if isinstance(res, Exception):
            u = planned[i].unit
            if result_status(u.result_dir, u.fingerprint, u.all_trials).state == COMPLETE:  # its part of a combined job went well
                res = JobReturn(overrides=list(job_overrides[i]), status=JobStatus.COMPLETED)
                res.return_value = {"status": Outcome.RAN.value, "result_dir": str(u.result_dir)}
            else:
                res = failed_return(job_overrides[i], res)
        out[i] = res
    return out


def error_line(e: BaseException) -> str:
    """The informative line of a submitit error: the job's own exception (last line of the shipped
    traceback, between the ``----`` rulers) or the first line (not started, cancelled, timed out)."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    rulers = [i for i, ln in enumerate(lines) if set(ln.strip()) == {"-"}]
    if len(rulers) >= 2 and rulers[1] > 0:
        return lines[rulers[1] - 1].strip()
    return lines[0].strip() if lines else type(e).__name__


def pool_line(params: dict[str, Any], pool: Pool, jobs: Sequence[Any]) -> str:
    r = pool_resources(params, pool)
    ids = sorted({str(j.job_id) for j in jobs}, key=lambda s: [int(x) for x in s.split("_")])
    if pool.combine:
        what = f"1 SLURM job running its {len(pool.members)} jobs one after the other (combine_tasks)"
    elif len(ids) == 1:
        what = "1 job"
    else:
        arrays = list(dict.fromkeys(i.split("_")[0] for i in ids))
        at_most = f"at most {min(throttle(params, pool), len(ids))} at once"
        if len(arrays) == 1:
            what = f"array {arrays[0]}: {len(ids)} tasks, {at_most}"
        else:
            what = f"arrays {', '.join(arrays)}: {len(ids)} tasks in {len(arrays)} arrays of at most {max_array_size()} (MaxArraySize), {at_most} each"
    mem = f", {r['mem_gb']} GB" if r["mem_gb"] else ""
    res = f"{r['nodes']} node x {r['tasks_per_node']} task x {r['cpus_per_task']} cpu, {r['gpus_per_node'] or 0} gpu{mem}, {r['timeout_min']} min"
    shown = ", ".join(ids) if len(ids) <= 4 else f"{ids[0]} .. {ids[-1]}"
    return f"  pool {pool.name}: {what} ({res}) -> SLURM job {shown}"


def summary(lines: list[str], owner: dict[int, Any], logs: Path, params: dict[str, Any]) -> str:
    arrays = sorted({str(j.job_id).split("_")[0] for j in owner.values()}, key=int)
    ids = ",".join(arrays)
    out = [f"fewshot-eval: submitted {len(owner)} job{'s' if len(owner) != 1 else ''} to SLURM in {len(lines)} pool{'s' if len(lines) != 1 else ''}:"] + lines
    if owner:
        out += [
            f"  logs:    {logs.absolute()}/<job id>/<job id>_0_log.out|.err (each result dir's submitted.json names its own)",
            f"  watch:   squeue -j {ids}    |    sacct -X -j {ids} -o JobID,State,Elapsed,ExitCode",
            "  collect: re-run the same command: complete results are skipped, queued/running ones stay pending, "
            "failed or cancelled ones are submitted again (add dry_run=true to see their SLURM states).",
        ]
        if params.get("wait"):
            out.append("  waiting for them (Ctrl-C stops waiting; the jobs keep running) ...")
    return "\n".join(out)

"""The ``local_parallel`` launcher: jobs as subprocesses on this machine, in per-model pools.

Each job runs the task function and config it is given, as Hydra's own launchers do: this process
composes the job's config (``hydra.job.num``/``id`` set, MULTIRUN mode), pickles it with the task
function, and a job process (:mod:`fewshot_eval.launch.parallel_job`) runs Hydra's ``run_job`` on
it -- per-job ``.hydra/`` and Hydra log in ``hydra.sweep.dir/hydra.sweep.subdir`` -- and hands the
whole ``JobReturn`` back. The job process's output goes to ``job.log`` in its job dir;
``<sweep dir>/launches.jsonl`` records when each process started and ended. Callbacks'
``on_job_start``/``on_job_end`` run here, in the sweep's process, around each job.

At most ``max_workers`` jobs run at once, and at most each pool's limit of one pool (the fewshot
sweeper's pools: one per model setting, limited by its ``max_parallel``). Ctrl-C, SIGTERM or SIGHUP:
the job processes are terminated (each runs in its own process group), given a few seconds, killed
if still there, then the sweep stops with one line and 128 + the signal number. A sweep that is
SIGKILLed takes its job processes with it (Linux: their parent-death signal, see parallel_job).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict, deque
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from fewshot_eval import progress
from fewshot_eval.config import JOB_LOG_ENV, SWEEP_JOB_ENV
from fewshot_eval.launch.batch import LaunchBatch
from fewshot_eval.launch.joblog import log_launch, warn_unwritten
from fewshot_eval.launch.parallel_job import EXIT_UNWRITABLE, SWEEP_PID_ENV
from fewshot_eval.launch.returns import describe_return, failed_return, job_label, outcome_of
from fewshot_eval.store.atomic import append_jsonl, write_bytes

log = logging.getLogger("fewshot_eval")

# Seconds a job process gets to end after SIGTERM before it is killed (the sweep was stopped).
STOP_GRACE_S = 5.0
JOB_LOG = "job.log"  # the job process's stdout and stderr, in its job dir


def _error_line(logf: Path) -> str:
    """The last line of a failed job's log that says something (Hydra's HYDRA_FULL_ERROR hint is not)."""
    lines = logf.read_text(errors="replace").strip().splitlines() if logf.exists() else []
    tail = [line for line in lines if line.strip() and "HYDRA_FULL_ERROR" not in line][-1:]
    return " ".join(tail).removeprefix("fewshot-eval: error: ")


def _record(path: Path, row: dict[str, Any]) -> None:
    """A line of ``launches.jsonl``; a full disk costs the record (one warning), never the sweep."""
    try:
        append_jsonl(path, row)
    except OSError as e:
        warn_unwritten(path, e)


def _stop_jobs(procs: Sequence[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM each job's process group, wait up to ``grace_s`` in all, then SIGKILL what is left."""

    def signal_group(p: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(p.pid, sig)  # the job and anything it started (it leads its own session)
        except (ProcessLookupError, PermissionError):
            pass

    for p in procs:
        if p.poll() is None:
            signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        if p.poll() is None:
            signal_group(p, signal.SIGKILL)
            p.wait()


@contextmanager
def as_hydra_config(config: DictConfig) -> Iterator[None]:
    """While inside, HydraConfig is a job's config, as while Hydra's ``run_job`` runs the job (and its callbacks)."""
    hc = HydraConfig.instance()
    saved = hc.cfg
    hc.set_config(config)
    try:
        yield
    finally:
        hc.cfg = saved


def job_dir_of(config: DictConfig) -> Path:
    """``hydra.sweep.dir/hydra.sweep.subdir`` of a job's config, resolved as Hydra's ``run_job`` will
    (interpolations such as ``${hydra.job.num}`` or ``${hydra.job.override_dirname}`` included)."""
    with as_hydra_config(config):
        return Path(str(OmegaConf.select(config, "hydra.sweep.dir"))).absolute() / str(OmegaConf.select(config, "hydra.sweep.subdir"))


class _Running:
    """One job process: its config, where its output goes, when it started."""

    def __init__(self, proc: subprocess.Popen, config: DictConfig, pool: str, out: IO[Any], logf: Path, ret_path: Path) -> None:
        self.proc, self.config, self.pool, self.out, self.logf, self.ret_path = proc, config, pool, out, logf, ret_path
        self.start = time.time()


def launch_parallel(
    hydra_context: Any,
    task_function: Any,
    config: DictConfig,
    jobs: Sequence[tuple[list[str], str, int]],
    max_workers: int,
    initial_job_idx: int = 0,
    compose: Optional[Callable[[list[str]], DictConfig]] = None,
) -> list[JobReturn]:
    """Run ``jobs`` -- (overrides, pool name, the pool's limit) -- as job processes; at most
    ``max_workers`` at once and each pool's limit per pool. ``compose`` builds a job's config (the
    planner's cheap ``job_config``); default: Hydra's full composition. One line per finished job
    says how it ended. Returns one ``JobReturn`` per job, in order."""
    if compose is None:
        loader = hydra_context.config_loader
        compose = lambda overrides: loader.load_sweep_config(config, overrides)  # noqa: E731
    setup_globals()
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    callbacks = hydra_context.callbacks
    queue = deque(range(len(jobs)))
    running: dict[int, _Running] = {}
    per_pool: dict[str, int] = defaultdict(int)
    returns: dict[int, JobReturn] = {}
    env = dict(os.environ, **{SWEEP_JOB_ENV: "1"})
    tmp = Path(tempfile.mkdtemp(prefix="fewshot-parallel-"))  # the pickles handed to and from the job processes
    shared = tmp / "shared.pkl"

    def start(i: int, bar: progress.SweepProgress) -> None:
        import cloudpickle

        overrides, pool, _ = jobs[i]
        num = initial_job_idx + i
        try:
            job_cfg = compose(list(overrides))
            with open_dict(job_cfg):
                job_cfg.hydra.job.id = f"{job_cfg.hydra.job.name}_{num}"
                job_cfg.hydra.job.num = num
            job_dir = job_dir_of(job_cfg)
            job_dir.mkdir(parents=True, exist_ok=True)
            write_bytes(tmp / f"job{num}.pkl", cloudpickle.dumps(job_cfg))
        except Exception as e:  # composition failed: count it, go on
            ret = failed_return(overrides, e)
            returns[i] = ret
            bar.finished(outcome_of(ret), f"{job_label(overrides)}: {describe_return(ret, 0.0)}")
            return
        with as_hydra_config(job_cfg):
            callbacks.on_job_start(config=job_cfg, task_function=task_function)
        logf = job_dir / JOB_LOG
        out = open(logf, "w")
        cmd = [sys.executable, "-m", "fewshot_eval.launch.parallel_job", str(shared), str(tmp / f"job{num}.pkl"), str(tmp / f"ret{num}.pkl")]
        # its own session: a Ctrl-C at the terminal reaches only the sweep, which stops the jobs
        # and it dies with the sweep, even a SIGKILLed one (parallel_job.die_with_sweep)
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**env, JOB_LOG_ENV: str(logf), SWEEP_PID_ENV: str(os.getpid())},
                                start_new_session=True)
        running[i] = _Running(proc, job_cfg, pool, out, logf, tmp / f"ret{num}.pkl")
        per_pool[pool] += 1

    def finish(i: int, bar: progress.SweepProgress) -> None:
        r = running.pop(i)
        r.out.close()
        per_pool[r.pool] -= 1
        overrides = jobs[i][0]
        rc = r.proc.returncode
        ret = _read_return(r.ret_path)
        why = None
        if ret is None:  # the job process died before run_job returned (killed, out of memory, ...)
            line = _error_line(r.logf) or ("it could not write its result or log (a full disk?)" if rc == EXIT_UNWRITABLE else "")
            ret = failed_return(overrides, RuntimeError(f"exit {rc}: {line} (log: {r.logf})"))
        elif ret.status == JobStatus.FAILED:
            why = f"exit {rc}: {traceback.format_exception_only(ret._return_value)[-1].strip()} (log: {r.logf})"
        returns[i] = ret
        end = time.time()
        _record(sweep_dir / "launches.jsonl", {"job": initial_job_idx + i, "pool": r.pool, "start": r.start, "end": end,
                                                   "exit": rc, "overrides": overrides})
        with as_hydra_config(r.config):
            callbacks.on_job_end(config=r.config, job_return=ret)
        bar.finished(outcome_of(ret), f"{job_label(overrides)}: {describe_return(ret, end - r.start, why)}")

    try:
        import cloudpickle

        # once per sweep: the task function, the config loader and Hydra's global state (resolvers included)
        write_bytes(shared, cloudpickle.dumps((task_function, hydra_context.config_loader, Singleton.get_state())))
        # SIGTERM/SIGHUP stop the job processes too when another app (without fewshot-eval's handlers) runs this launcher
        with progress.signals_raise(), progress.SweepProgress(len(jobs)) as bar:
            try:
                while queue or running:
                    started = True
                    while started and len(running) < max_workers:
                        started = False
                        for _ in range(len(queue)):
                            i = queue[0]
                            queue.rotate(-1)
                            if per_pool[jobs[i][1]] < jobs[i][2]:
                                queue.remove(i)
                                start(i, bar)
                                started = True
                                break
                    time.sleep(0.05)
                    for i in [i for i, r in running.items() if r.proc.poll() is not None]:
                        finish(i, bar)
            except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: stop the job processes, then let the app exit
                with progress.shielded():
                    procs = [r.proc for r in running.values()]
                    _stop_jobs(procs)
                    for i, r in list(running.items()):
                        r.out.close()
                        _record(sweep_dir / "launches.jsonl", {"job": initial_job_idx + i, "pool": r.pool, "start": r.start,
                                                                   "end": time.time(), "exit": r.proc.returncode,
                                                                   "overrides": jobs[i][0], "stopped": True})
                    running.clear()
                stopped = f"stopped {len(procs)} running job{'s' if len(procs) != 1 else ''}, " if procs else ""
                raise progress.Interrupted.of(e, f"{stopped}{len(returns)} of {len(jobs)} jobs finished") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [returns[i] for i in range(len(jobs))]


def _read_return(path: Path) -> Optional[JobReturn]:
    if not path.exists():
        return None
    import cloudpickle

    try:
        with open(path, "rb") as f:
            ret = cloudpickle.load(f)
    except Exception:  # noqa: BLE001 - a half-written file of a killed job: as if there were none
        return None
    return ret if isinstance(ret, JobReturn) else None


def launch_batch(hydra_context: Any, task_function: Any, config: DictConfig, batch: LaunchBatch, max_workers: int, launcher: str) -> list[JobReturn]:
    """The fewshot sweeper's planned jobs, each logged; each model's jobs at most its max_parallel at once,
    their configs composed by the planner."""
    for j in batch.jobs:
        log_launch(batch.output_root, j, launcher)
    jobs = [(o, j.unit.model_key, batch.pool_limit(i)) for i, (o, j) in enumerate(zip(batch.overrides, batch.jobs))]
    return launch_parallel(hydra_context, task_function, config, jobs, max_workers, 0, batch.planner.job_config)

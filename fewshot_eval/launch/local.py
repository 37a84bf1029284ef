"""Local launchers: sequential in this process (fast), or parallel subprocesses in per-model pools.

Both show the sweep's progress (:class:`fewshot_eval.progress.SweepProgress`) and stop cleanly on
Ctrl-C, SIGTERM or SIGHUP: the sequential launcher lets the exception end the running job; the
parallel one terminates its job processes (each runs in its own process group), waits briefly,
kills what is left, then re-raises so the app exits with one line and 128 + the signal number.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import IO, Any, Callable, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from fewshot_eval import progress
from fewshot_eval.config import JOB_LOG_ENV, SWEEP_JOB_ENV
from fewshot_eval.outcome import OUTCOME_FILE_ENV, Outcome, job_outcome
from fewshot_eval.store.atomic import append_jsonl, read_json

log = logging.getLogger("fewshot_eval")

# Seconds a job process gets to end after SIGTERM before it is killed (the sweep was stopped).
STOP_GRACE_S = 5.0


def failed_return(overrides: Sequence[str], exc: BaseException) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
    ret.return_value = exc
    return ret


def outcome_of(ret: JobReturn) -> Outcome:
    return job_outcome(ret.status == JobStatus.COMPLETED, ret._return_value)


def launch_sequential(
    hydra_context: Any,
    task_function: Any,
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    compose: Callable[[list[str]], DictConfig] | None = None,
) -> list[JobReturn]:
    """Run each job in this process, one after the other; a failure does not stop the others.

    ``compose`` builds a job's config (the planner's cached ``job_config``); default: Hydra's full composition.
    """
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    if compose is None:
        loader = hydra_context.config_loader
        compose = lambda overrides: loader.load_sweep_config(config, overrides)  # noqa: E731
    returns: list[JobReturn] = []
    with progress.SweepProgress(len(job_overrides)) as bar, bar.stdout_above_bar():
        try:
            for idx, overrides in enumerate(job_overrides):
                idx += initial_job_idx
                try:
                    sweep_config = compose(list(overrides))
                    with open_dict(sweep_config):
                        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
                        sweep_config.hydra.job.num = idx
                        # the job writes its resolved config into its result dir; skip Hydra's three YAML dumps
                        sweep_config.hydra.output_subdir = None
                    progress.job_prefix = f"[{idx - initial_job_idx + 1}/{len(job_overrides)}] "
                    ret = run_job(
                        hydra_context=hydra_context,
                        task_function=task_function,
                        config=sweep_config,
                        job_dir_key="hydra.sweep.dir",
                        job_subdir_key="hydra.sweep.subdir",
                        configure_logging=idx == initial_job_idx,
                    )
                except Exception as e:  # composition failed: count it, go on
                    ret = failed_return(overrides, e)
                if progress.received is not None:  # a stop signal that landed inside Hydra/OmegaConf code may surface
                    raise progress.Interrupted(progress.received)  # there as another error: it is still a stop
                if ret.status == JobStatus.FAILED:
                    log.error("job %d failed (%s): %s", idx, " ".join(overrides), ret._return_value)
                returns.append(ret)
                bar.finished(outcome_of(ret))
        except KeyboardInterrupt as e:  # Ctrl-C / SIGTERM: the running job is abandoned (its finished trials are kept)
            raise progress.Interrupted.of(e, f"{len(returns)} of {len(job_overrides)} jobs finished") from None
        finally:
            progress.job_prefix = ""
    HydraConfig.instance().set_config(config)
    return returns


def job_label(overrides: Sequence[str]) -> str:
    """``random x copa_demo nshot=0`` (``trial=1`` with split trials) from a job's overrides."""
    kv = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    if "model" not in kv or "task" not in kv:
        return " ".join(overrides)
    return f"{kv['model']} x {kv['task']}" + "".join(f" {k}={kv[k]}" for k in ("nshot", "trial") if k in kv)


def describe_return(ret: JobReturn, seconds: float) -> str:
    """How a job ended: ``ran in 1.2s``, ``skipped (complete) in 0.9s``, ``running elsewhere in 1.0s``,
    ``FAILED in 2.1s: exit 1: ValueError: ... (log: <sweep dir>/3/job.log)``."""
    outcome = outcome_of(ret)
    value = ret._return_value
    took = f"in {progress.fmt_duration(seconds) if seconds >= 10 else f'{seconds:.1f}s'}"
    if outcome == Outcome.FAILED:
        return f"FAILED {took}: {value}"
    if outcome == Outcome.SKIPPED and isinstance(value, dict) and value.get("reason"):
        return f"skipped ({value['reason']}) {took}"
    return f"{outcome.value} {took}"


def _error_line(logf: Path) -> str:
    """The last line of a failed job's log that says something (Hydra's HYDRA_FULL_ERROR hint is not)."""
    lines = logf.read_text(errors="replace").strip().splitlines() if logf.exists() else []
    tail = [line for line in lines if line.strip() and "HYDRA_FULL_ERROR" not in line][-1:]
    return " ".join(tail).removeprefix("fewshot-eval: error: ")


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


def launch_parallel(config: DictConfig, jobs: Sequence[tuple[list[str], str, int]], max_workers: int) -> list[JobReturn]:
    """Run jobs as subprocesses (``python -m fewshot_eval <overrides>``); at most ``max_workers`` at once
    and at most each pool's limit per pool. ``jobs``: (overrides, pool name, pool max_parallel).
    Each job's output goes to ``<sweep dir>/<idx>/job.log``; ``<sweep dir>/launches.jsonl`` records
    when each process started and ended. One line per finished job says how it ended."""
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    queue = deque(enumerate(jobs))
    running: dict[int, tuple[subprocess.Popen, str, IO[Any]]] = {}
    per_pool: dict[str, int] = defaultdict(int)
    returns: dict[int, JobReturn] = {}
    starts: dict[int, float] = {}
    env = dict(os.environ, **{SWEEP_JOB_ENV: "1"})
    # the job processes see the same config search path and hydra overrides as this sweep
    base_args = [f"--config-dir={s.path}" for s in config.hydra.runtime.config_sources if s.provider == "command-line"]
    base_args += [o for o in config.hydra.overrides.hydra if not o.startswith(("hydra/launcher", "hydra.launcher", "hydra/sweeper", "hydra.sweeper", "hydra.mode"))]

    def finish(idx: int, proc: subprocess.Popen, bar: progress.SweepProgress) -> None:
        _, pool, out = running.pop(idx)
        out.close()
        per_pool[pool] -= 1
        overrides = jobs[idx][0]
        job_dir = sweep_dir / str(idx)
        if proc.returncode == 0:
            ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
            ret.return_value = read_json(job_dir / "outcome.json") or {"status": Outcome.RAN.value}
        else:
            logf = job_dir / "job.log"
            ret = failed_return(overrides, RuntimeError(f"exit {proc.returncode}: {_error_line(logf)} (log: {logf})"))
        returns[idx] = ret
        end = time.time()
        append_jsonl(sweep_dir / "launches.jsonl", {"job": idx, "pool": pool, "start": starts[idx], "end": end,
                                                   "exit": proc.returncode, "overrides": overrides})
        bar.finished(outcome_of(ret), f"{job_label(overrides)}: {describe_return(ret, end - starts[idx])}")

    with progress.SweepProgress(len(jobs)) as bar:
        try:
            while queue or running:
                started = True
                while started and len(running) < max_workers:
                    started = False
                    for _ in range(len(queue)):
                        idx, (overrides, pool, limit) = queue[0]
                        queue.rotate(-1)
                        if per_pool[pool] < limit:
                            queue.remove((idx, (overrides, pool, limit)))
                            job_dir = sweep_dir / str(idx)
                            job_dir.mkdir(parents=True, exist_ok=True)
                            out = open(job_dir / "job.log", "w")
                            cmd = [sys.executable, "-m", "fewshot_eval", *base_args, *overrides, f"hydra.run.dir={job_dir}"]
                            job_env = {**env, OUTCOME_FILE_ENV: str(job_dir / "outcome.json"), JOB_LOG_ENV: str((job_dir / "job.log").absolute())}
                            # its own session: a Ctrl-C at the terminal reaches only the sweep, which stops the jobs
                            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=job_env, start_new_session=True)
                            running[idx] = (proc, pool, out)
                            starts[idx] = time.time()
                            per_pool[pool] += 1
                            started = True
                            break
                time.sleep(0.05)
                for idx in [i for i, (p, _, _) in running.items() if p.poll() is not None]:
                    finish(idx, running[idx][0], bar)
        except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: stop the job processes, then let the app exit
            with progress.shielded():
                procs = [p for p, _, _ in running.values()]
                _stop_jobs(procs)
                for idx, (p, pool, out) in list(running.items()):
                    out.close()
                    append_jsonl(sweep_dir / "launches.jsonl", {"job": idx, "pool": pool, "start": starts[idx], "end": time.time(),
                                                               "exit": p.returncode, "overrides": jobs[idx][0], "stopped": True})
                running.clear()
            stopped = f"stopped {len(procs)} running job{'s' if len(procs) != 1 else ''}, " if procs else ""
            raise progress.Interrupted.of(e, f"{stopped}{len(returns)} of {len(jobs)} jobs finished") from None
    return [returns[i] for i in range(len(jobs))]

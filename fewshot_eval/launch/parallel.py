"""The ``local_parallel`` launcher: jobs as subprocesses in per-model pools.

At most ``max_workers`` jobs run at once, and at most each model's ``max_parallel`` of one model.
Ctrl-C, SIGTERM or SIGHUP: the job processes are terminated (each runs in its own process group),
given a few seconds, killed if still there, then the sweep stops with one line and 128 + the signal
number.
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
from typing import IO, Any, Sequence

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig

from fewshot_eval import progress
from fewshot_eval.config import JOB_LOG_ENV, SWEEP_JOB_ENV
from fewshot_eval.launch.batch import LaunchBatch
from fewshot_eval.launch.joblog import log_launch
from fewshot_eval.launch.returns import describe_return, failed_return, job_label, outcome_of
from fewshot_eval.outcome import OUTCOME_FILE_ENV, Outcome
from fewshot_eval.store.atomic import append_jsonl, read_json

log = logging.getLogger("fewshot_eval")

# Seconds a job process gets to end after SIGTERM before it is killed (the sweep was stopped).
STOP_GRACE_S = 5.0


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


def launch_batch(config: DictConfig, batch: LaunchBatch, max_workers: int, launcher: str) -> list[JobReturn]:
    """The fewshot sweeper's planned jobs, each logged; each model's jobs at most its max_parallel at once."""
    for j in batch.jobs:
        log_launch(batch.output_root, j, launcher)
    jobs = [(o, j.unit.model_key, batch.pool_limit(i)) for i, (o, j) in enumerate(zip(batch.overrides, batch.jobs))]
    return launch_parallel(config, jobs, max_workers)

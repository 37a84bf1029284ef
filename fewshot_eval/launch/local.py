"""Local launchers: sequential in this process (fast), or parallel subprocesses in per-model pools."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from fewshot_eval import progress
from fewshot_eval.config import JOB_LOG_ENV, SWEEP_JOB_ENV
from fewshot_eval.outcome import OUTCOME_FILE_ENV, Outcome
from fewshot_eval.store.atomic import append_jsonl, read_json

log = logging.getLogger("fewshot_eval")


def failed_return(overrides: Sequence[str], exc: BaseException) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
    ret.return_value = exc
    return ret


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
    returns = []
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
        if ret.status == JobStatus.FAILED:
            log.error("job %d failed (%s): %s", idx, " ".join(overrides), ret._return_value)
        returns.append(ret)
    HydraConfig.instance().set_config(config)
    return returns


def launch_parallel(config: DictConfig, jobs: Sequence[tuple[list[str], str, int]], max_workers: int) -> list[JobReturn]:
    """Run jobs as subprocesses (``python -m fewshot_eval <overrides>``); at most ``max_workers`` at once
    and at most each pool's limit per pool. ``jobs``: (overrides, pool name, pool max_parallel).
    Each job's output goes to ``<sweep dir>/<idx>/job.log``; ``<sweep dir>/launches.jsonl`` records
    when each process started and ended."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    queue = deque(enumerate(jobs))
    running: dict[int, tuple[subprocess.Popen, str, Any]] = {}
    per_pool: dict[str, int] = defaultdict(int)
    returns: dict[int, JobReturn] = {}
    starts: dict[int, float] = {}
    env = dict(os.environ, **{SWEEP_JOB_ENV: "1"})
    # the job processes see the same config search path and hydra overrides as this sweep
    base_args = [f"--config-dir={s.path}" for s in config.hydra.runtime.config_sources if s.provider == "command-line"]
    base_args += [o for o in config.hydra.overrides.hydra if not o.startswith(("hydra/launcher", "hydra.launcher", "hydra/sweeper", "hydra.sweeper", "hydra.mode"))]
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
                    running[idx] = (subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=job_env), pool, out)
                    starts[idx] = time.time()
                    per_pool[pool] += 1
                    started = True
                    break
        time.sleep(0.05)
        for idx in [i for i, (p, _, _) in running.items() if p.poll() is not None]:
            proc, pool, out = running.pop(idx)
            out.close()
            per_pool[pool] -= 1
            overrides = jobs[idx][0]
            if proc.returncode == 0:
                ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
                ret.return_value = read_json(sweep_dir / str(idx) / "outcome.json") or {"status": Outcome.RAN.value}
            else:
                logf = sweep_dir / str(idx) / "job.log"
                lines = logf.read_text(errors="replace").strip().splitlines() if logf.exists() else []
                tail = [line for line in lines if line.strip() and "HYDRA_FULL_ERROR" not in line][-1:]
                ret = failed_return(overrides, RuntimeError(f"exit {proc.returncode}: {' '.join(tail)} (log: {logf})"))
                log.error("job %d failed (%s): see %s", idx, " ".join(overrides), logf)
            returns[idx] = ret
            append_jsonl(sweep_dir / "launches.jsonl", {"job": idx, "pool": pool, "start": starts[idx], "end": time.time(),
                                                       "exit": proc.returncode, "overrides": overrides})
    return [returns[i] for i in range(len(jobs))]

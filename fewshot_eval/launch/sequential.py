"""The ``local`` launcher: each job in this process, one after the other (fast: no start-up per job).

Each job runs as through Hydra's ``run_job`` with Hydra's basic launcher (an equivalent without its
repeated work: :mod:`fewshot_eval.launch.inprocess_job`): its own log file and, when
``hydra.output_subdir`` is set, its ``.hydra/`` in ``hydra.sweep.dir/hydra.sweep.subdir``; callbacks'
``on_job_start``/``on_job_end`` around it. Shows the sweep's progress
(:class:`fewshot_eval.progress.SweepProgress`); Ctrl-C, SIGTERM or SIGHUP end the running job (its
finished trials are kept) and stop the sweep.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from omegaconf import DictConfig, open_dict

from fewshot_eval import progress
from fewshot_eval.launch.batch import LaunchBatch
from fewshot_eval.launch.inprocess_job import InProcessJobs, parse_trees_kept
from fewshot_eval.launch.joblog import log_launch
from fewshot_eval.launch.returns import failed_return, outcome_of
from fewshot_eval.plan.unit import planned_unit
from fewshot_eval.store.atomic import group_commit

log = logging.getLogger("fewshot_eval")


def launch_sequential(
    hydra_context: Any,
    task_function: Any,
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    compose: Callable[[list[str]], DictConfig] | None = None,
    fsync_every_s: float = 0.0,
    units: Sequence[Any] | None = None,
) -> list[JobReturn]:
    """Run each job in this process, one after the other; a failure does not stop the others.

    ``compose`` builds a job's config (the planner's cached ``job_config``); default: Hydra's full composition.
    ``fsync_every_s`` > 0: the jobs' fsyncs are shared, at most one flush per interval (store/atomic.group_commit).
    ``units``: per job, the planner's JobUnit, which its task function then takes (plan.unit.planned_unit).
    """
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    if compose is None:
        loader = hydra_context.config_loader
        compose = lambda overrides: loader.load_sweep_config(config, overrides)  # noqa: E731
    returns: list[JobReturn] = []
    jobs = InProcessJobs(hydra_context, task_function)
    with progress.SweepProgress(len(job_overrides)) as bar, bar.stdout_above_bar(), group_commit(fsync_every_s), parse_trees_kept():
        try:
            for idx, overrides in enumerate(job_overrides):
                idx += initial_job_idx
                try:
                    sweep_config = compose(list(overrides))
                    with open_dict(sweep_config):
                        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
                        sweep_config.hydra.job.num = idx
                    progress.job_prefix = f"[{idx - initial_job_idx + 1}/{len(job_overrides)}] "
                    # .hydra/ (when hydra.output_subdir is set) and its own log in hydra.sweep.dir/hydra.sweep.subdir
                    with planned_unit(overrides, units[idx - initial_job_idx] if units is not None else None):
                        ret = jobs.run(sweep_config, job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
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


def launch_batch(hydra_context: Any, task_function: Any, config: DictConfig, batch: LaunchBatch, launcher: str,
                 fsync_every_s: float = 0.0) -> list[JobReturn]:
    """The fewshot sweeper's planned jobs, each logged in ``scheduled_jobs.jsonl``; their configs come from the planner."""
    for j in batch.jobs:
        log_launch(batch.output_root, j, launcher)
    planner = batch.planner
    # one job at a time, each done with its config before the next: the planner re-sets one config in place
    return launch_sequential(hydra_context, task_function, config, batch.overrides, 0, lambda o: planner.job_config(o, reuse=True),
                             fsync_every_s, units=[j.unit for j in batch.jobs])

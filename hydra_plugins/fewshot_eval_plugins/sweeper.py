"""The fewshot sweeper: plan the grid, drop what is already done, then launch the rest.

    python -m fewshot_eval -m model=random,majority task=copa_demo nshot=0,2   -> 4 jobs

Unlike Hydra's BasicSweeper it composes no config per job before launching (see
``fewshot_eval.plan.planner``), skips complete/pending/stale results, prints the plan for
``dry_run=true``, logs every launched job, and ends with counts and a non-zero exit status
when a job failed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from typing import Any, Dict, List, Optional

from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from fewshot_eval.plan.checks import exit_on_config_error, print_plan_warnings

log = logging.getLogger("fewshot_eval")

# Exit statuses: a planning error (nothing launched); no job failed but some results are still
# being computed by another process.
EXIT_CONFIG = 2
EXIT_ELSEWHERE = 3


class FewshotSweeper(Sweeper):
    def __init__(self, params: Optional[Dict[str, Any]] = None) -> None:
        self.params = params or {}
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)

    @exit_on_config_error
    def sweep(self, arguments: List[str]) -> Any:
        from fewshot_eval.config import ConfigError
        from fewshot_eval.launch.batch import is_local_launcher
        from fewshot_eval.launch.dispatch import launch_jobs
        from fewshot_eval.outcome import Outcome, job_outcome
        from fewshot_eval.plan.expand import expand
        from fewshot_eval.plan.planner import ERROR, FAILED, RUN, Planner
        from fewshot_eval.plan.table import counts, format_plan
        from fewshot_eval.plan.unit import output_root
        from fewshot_eval.store.writable import check_writable

        assert self.config is not None and self.hydra_context is not None
        tic = time.perf_counter()
        loader = self.hydra_context.config_loader
        combos = expand(self.params, arguments, loader, self.config.hydra.runtime.choices)
        local = is_local_launcher(self.config.hydra.launcher)
        planner = Planner(self.config, loader, pending_check=_pending_check(), local_launcher=local)
        jobs = planner.plan(combos)
        print_plan_warnings(jobs)
        root = output_root(planner.run, planner.cwd)
        unwritable = ""
        try:
            check_writable(root)
        except ConfigError as e:  # a dry run may look at a colleague's read-only tree
            if not self.config.dry_run:
                raise
            unwritable = str(e)
        elapsed = time.perf_counter() - tic
        to_run = [j for j in jobs if j.status == RUN]
        errors = [j for j in jobs if j.status == ERROR]
        planned = f"{len(jobs)} job{'s' if len(jobs) != 1 else ''} planned in {elapsed:.2f}s"
        if self.config.dry_run:
            from omegaconf import OmegaConf

            launcher_settings = None if local else OmegaConf.to_container(self.config.hydra.launcher, resolve=True)
            print(format_plan(jobs, root, launcher_settings, planner.run.get("max_parallel")))
            if errors:
                print(f"\nDry run: {planned} ({counts(jobs)}). Nothing launched.")
                _report_errors(errors)
                sys.exit(EXIT_CONFIG)
            if unwritable and to_run:
                print(f"\nDry run: {planned} ({counts(jobs)}). Nothing launched.")
                print(f"fewshot-eval: error: {unwritable}", file=sys.stderr)
                sys.exit(EXIT_CONFIG)
            writable = "is not writable by you (nothing would run)" if unwritable else "is writable"
            print(f"\nDry run: {planned} ({counts(jobs)}); output dir {root} {writable}. Nothing launched.")
            return []
        print(f"fewshot-eval: {planned}: {counts(jobs)}. Results under {root}")
        if errors:
            _report_errors(errors)
            print("Nothing launched: these jobs would fail at their start. Fix them (dry_run=true shows the plan) "
                  "or leave them out of the sweep.", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        for j in jobs:
            if j.status == FAILED:
                print(f"  failed, not relaunched: {j.unit.model_key} x {j.unit.task_key} nshot={j.unit.nshot}: {j.detail}", file=sys.stderr)
        given_up = [j for j in jobs if j.status == FAILED]
        if not to_run:
            print("Nothing to launch: every selected result is complete, pending, stale or failed "
                  "(override_completed=true re-runs them; dry_run=true lists them).")
            print(f"Aggregate: fewshot-eval report {root}")
            if given_up:
                sys.exit(1)
            return []
        returns = launch_jobs(self, planner, to_run, root)
        outcomes = [job_outcome(r.status == JobStatus.COMPLETED, r._return_value) for r in returns]
        n = Counter(outcomes)
        failed = [(j, r) for j, r, o in zip(to_run, returns, outcomes) if o == Outcome.FAILED]
        sub = f"submitted {n[Outcome.SUBMITTED]} (SLURM; re-run to collect), " if n[Outcome.SUBMITTED] else ""
        elsewhere = f"running elsewhere {n[Outcome.ELSEWHERE]}, " if n[Outcome.ELSEWHERE] else ""
        print(f"fewshot-eval: ran {n[Outcome.RAN]}, {sub}{elsewhere}skipped {len(jobs) - len(to_run) + n[Outcome.SKIPPED]}, failed {len(failed)}.")
        for j, r in failed:
            print(f"  FAILED {j.unit.model_key} x {j.unit.task_key} nshot={j.unit.nshot}: {r._return_value} ({j.unit.result_dir})", file=sys.stderr)
        if n[Outcome.ELSEWHERE]:
            print(f"  {n[Outcome.ELSEWHERE]} job(s) were being run by another process; re-run this command once it has finished to collect them.")
        print(f"Aggregate: fewshot-eval report {root}")
        if failed or given_up:
            sys.exit(1)
        if n[Outcome.ELSEWHERE]:
            sys.exit(EXIT_ELSEWHERE)
        return [returns]


def _report_errors(errors: list[Any]) -> None:
    """Each distinct planning error once, with the jobs it affects."""
    by_reason: dict[str, list[Any]] = {}
    for j in errors:
        by_reason.setdefault(j.detail, []).append(j)
    for reason, js in by_reason.items():
        first = js[0].unit
        more = f" (and {len(js) - 1} more job{'s' if len(js) > 2 else ''})" if len(js) > 1 else ""
        print(f"fewshot-eval: error: {first.model_key} x {first.task_key} nshot={first.nshot}{more}: {reason}", file=sys.stderr)


def _pending_check() -> Any:
    from fewshot_eval.launch.slurm_states import pending_reason

    return pending_reason

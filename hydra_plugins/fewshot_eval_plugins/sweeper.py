"""``hydra/sweeper=fewshot`` (fewshot-eval's default): plan the grid, drop what is already done, then launch the rest.

    fewshot-eval -m model=random,majority task=copa_demo nshot=0,2   -> 4 jobs

Unlike Hydra's BasicSweeper it composes no config per job before launching (see
``fewshot_eval.plan.planner``), skips complete/pending/stale results, prints the plan for
``dry_run=true``, logs every launched job, and ends with counts. It never exits the process: it
records the sweep's exit status (``fewshot_eval.outcome``: 1 a job failed, 2 a planning error,
3 running elsewhere, 4 SLURM could not be reached, 128 + N stopped by signal N) and returns, so that Hydra runs the callbacks'
``on_multirun_end`` first; ``fewshot_eval.app`` exits with it.
"""

import contextlib
import logging
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger("fewshot_eval")


@dataclass
class FewshotSweeperConf:
    _target_: str = "hydra_plugins.fewshot_eval_plugins.sweeper.FewshotSweeper"
    # Sweep presets put their space here (model: "a,b", task: "x,y", nshot: "0,32").
    # Values must be sweep strings; a YAML list is rejected with a message.
    params: Optional[Dict[str, Any]] = None


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

    def sweep(self, arguments: List[str]) -> Any:
        """Plan and launch; records the exit status (``fewshot_eval.outcome.sweep_status``) instead of exiting."""
        from fewshot_eval import progress
        from fewshot_eval.config import ConfigError
        from fewshot_eval.hydra_errors import compact_message
        from fewshot_eval.outcome import EXIT_CONFIG, set_sweep_status

        assert self.config is not None
        _check_app(self.config)
        returns: list[list[JobReturn]] = []
        try:
            status, returns = self._sweep(arguments)
        except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP (progress.signals_raise): the sweep's last line
            stop = e if isinstance(e, progress.Interrupted) else progress.Interrupted.of(e)
            with progress.shielded():  # a second Ctrl-C must not cut the line short
                sys.stdout.flush()
                print(stop.message(), file=sys.stderr, flush=True)
                status = stop.exit_status
        except Exception as e:  # a config error, an unknown option ... (not a bug: that is reported by Hydra)
            message = str(e) if isinstance(e, ConfigError) else compact_message(e)
            if message is None:
                raise
            print(f"fewshot-eval: error: {message}", file=sys.stderr, flush=True)
            status = EXIT_CONFIG
        set_sweep_status(status)
        return returns

    def _sweep(self, arguments: List[str]) -> Tuple[int, List[List[JobReturn]]]:
        from fewshot_eval.launch.batch import runs_locally
        from fewshot_eval.launch.slurm.pending_check import SchedulerView
        from fewshot_eval.launch.slurm.site_profiles import resolve_site, site_env
        from fewshot_eval.plan.expand import expand
        from fewshot_eval.plan.planner import Planner, gc_paused

        assert self.config is not None and self.hydra_context is not None
        tic = time.perf_counter()
        loader = self.hydra_context.config_loader
        with gc_paused():  # tens of thousands of override lists: no garbage cycles among them
            combos = expand(self.params, arguments, loader, self.config.hydra.runtime.choices)
        local = runs_locally(self.launcher)
        planner = Planner(self.config, loader, pending_check=SchedulerView(), local_launcher=local)
        site = planner.site = resolve_site(self.config, planner.search)
        if site is not None:
            print(f"fewshot-eval: {site.describe()}", flush=True)
        # a dry run ends once it has printed the plan: the collector stays off until then and its plan is kept (gc_paused)
        with site_env(site), (gc_paused(keep=True) if self.config.dry_run else contextlib.nullcontext()):
            return self._plan_and_launch(planner, arguments, combos, local, site, tic)

    def _plan_and_launch(self, planner: Any, arguments: List[str], combos: List[List[str]], local: bool, site: Any,
                         tic: float) -> Tuple[int, List[List[JobReturn]]]:
        from fewshot_eval.config import ConfigError
        from fewshot_eval.launch.batch import BatchLauncher
        from fewshot_eval.launch.dispatch import all_returns, launch_plain, prepare_batch
        from fewshot_eval.outcome import EXIT_CONFIG, EXIT_ELSEWHERE, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, Outcome, job_outcome
        from fewshot_eval.plan.checks import print_plan_warnings, warn
        from fewshot_eval.plan.job_list import moved_results
        from fewshot_eval.plan.planner import ERROR, FAILED, RUN, gc_paused
        from fewshot_eval.plan.table import counts, format_plan
        from fewshot_eval.plan.unit import output_root
        from fewshot_eval.store.writable import check_writable

        assert self.config is not None
        jobs = planner.plan(combos)
        print_plan_warnings(jobs, planner.warnings)
        moved = moved_results(arguments, jobs)  # job_list=<file>: its jobs planned elsewhere?
        if moved:
            warn(moved)
        root = output_root(planner.run, planner.cwd)
        unwritable = ""
        try:
            check_writable(root, probe=not self.config.dry_run)  # a dry run writes nothing, not even a probe file
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
            with gc_paused():
                print(format_plan(jobs, root, launcher_settings, planner.run.get("max_parallel")))
            if errors:
                print(f"\nDry run: {planned} ({counts(jobs)}). Nothing launched.")
                _report_errors(errors)
                return EXIT_CONFIG, []
            if unwritable and to_run:
                print(f"\nDry run: {planned} ({counts(jobs)}). Nothing launched.")
                print(f"fewshot-eval: error: {unwritable}", file=sys.stderr)
                return EXIT_CONFIG, []
            writable = ("is writable" if not unwritable else "is on a full filesystem (nothing would run)" if "full filesystem" in unwritable
                        else "is not writable by you (nothing would run)")
            print(f"\nDry run: {planned} ({counts(jobs)}); output dir {root} {writable}. Nothing launched.")
            for line in _run_time_lines(planner, to_run, local, self.launcher):
                print(line)
            return EXIT_OK, []
        print(f"fewshot-eval: {planned}: {counts(jobs)}. Results under {root}")
        if not errors:
            for line in _run_time_lines(planner, to_run, local, self.launcher):
                print(f"fewshot-eval: {line}")
        if errors:
            _report_errors(errors)
            print("Nothing launched: these jobs would fail at their start. Fix them (dry_run=true shows the plan) "
                  "or leave them out of the sweep.", file=sys.stderr)
            return EXIT_CONFIG, []
        planner.commit()  # what the plan saw of SLURM (failures, adopted or ended submissions): never written by a dry run
        given_up = [j for j in jobs if j.status == FAILED]
        for j in given_up:
            print(f"  failed, not relaunched: {j.unit.model_key} x {j.unit.task_key} nshot={j.unit.nshot}: {j.detail}", file=sys.stderr)
        if not to_run:
            print("Nothing to launch: every selected result is complete, pending, stale or failed "
                  "(override_completed=true re-runs them; dry_run=true lists them).")
            print(f"Aggregate: fewshot-eval report {shlex.quote(str(root))}")
            return (EXIT_FAILED if given_up else EXIT_OK), []
        _save_multirun_yaml(self.config)
        batch, left_out = prepare_batch(to_run, root, planner, bool(self.config.override_completed), self.config.max_parallel)
        batch.site = site.options if site is not None else None
        launched: Sequence[JobReturn] = []
        if batch.jobs:
            launched = self.launcher.launch_batch(batch) if isinstance(self.launcher, BatchLauncher) else launch_plain(self.launcher, batch)
        returns = all_returns(left_out, launched)
        outcomes = [job_outcome(r.status == JobStatus.COMPLETED, r._return_value) for r in returns]
        n = Counter(outcomes)
        failed = [(j, r) for j, r, o in zip(to_run, returns, outcomes) if o == Outcome.FAILED]
        sub = f"submitted {n[Outcome.SUBMITTED]} (SLURM; re-run to collect), " if n[Outcome.SUBMITTED] else ""
        elsewhere = f"running elsewhere {n[Outcome.ELSEWHERE]}, " if n[Outcome.ELSEWHERE] else ""
        elsewhere += f"not submitted {n[Outcome.NOT_SUBMITTED]} (SLURM down), " if n[Outcome.NOT_SUBMITTED] else ""
        print(f"fewshot-eval: ran {n[Outcome.RAN]}, {sub}{elsewhere}skipped {len(jobs) - len(to_run) + n[Outcome.SKIPPED]}, failed {len(failed)}.")
        for j, r in failed:
            print(f"  FAILED {j.unit.model_key} x {j.unit.task_key} nshot={j.unit.nshot}: {r._return_value} ({j.unit.result_dir})", file=sys.stderr)
        if n[Outcome.ELSEWHERE]:
            print(f"  {n[Outcome.ELSEWHERE]} job(s) were being run by another process; re-run this command once it has finished to collect them.")
        print(f"Aggregate: fewshot-eval report {shlex.quote(str(root))}")
        if failed or given_up:
            return EXIT_FAILED, [returns]
        if n[Outcome.NOT_SUBMITTED]:
            return EXIT_UNREACHABLE, [returns]
        return (EXIT_ELSEWHERE if n[Outcome.ELSEWHERE] else EXIT_OK), [returns]


def _check_app(config: DictConfig) -> None:
    """The sweeper plans fewshot-eval's model x task grid: another app (without the ``model`` and
    ``task`` config groups) gets one line from Hydra instead of a KeyError deep in the planner."""
    from fewshot_eval.config import ConfigError

    choices = config.hydra.runtime.choices
    missing = [g for g in ("model", "task") if not choices.get(g)]
    if missing:
        raise ConfigError(
            f"hydra/sweeper=fewshot plans fewshot-eval's model x task grid, but this app has no '{missing[0]}' config group; "
            f"use Hydra's basic sweeper (hydra/sweeper=basic) or another one."
        )


def _save_multirun_yaml(config: DictConfig) -> None:
    """``<sweep dir>/multirun.yaml``, the sweep's config, as Hydra's basic sweeper writes it (not for a dry run)."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from fewshot_eval.config import ConfigError

    sweep_dir = Path(str(config.hydra.sweep.dir))
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
    except OSError as e:  # the disk filled up since the output dir was probed: one line, nothing launched
        raise ConfigError(f"cannot write {sweep_dir / 'multirun.yaml'} ({e.strerror or e}); nothing launched. "
                          f"Free space there or pass output_dir=<a directory with space>.") from None


def _run_time_lines(planner: Any, to_run: list[Any], local: bool, launcher: Any) -> list[str]:
    """The sweep's ETA from the wall times of earlier results (plan/estimates.py), and the time limits
    ``timeout_min=auto`` set per model (at most 10 lines of those)."""
    from fewshot_eval.plan.estimates import sweep_eta

    if not to_run:
        return []
    planner.estimate(to_run)
    max_parallel = planner.run.get("max_parallel")
    cap = None if local else (planner.base.hydra.get("launcher") or {}).get("array_parallelism")

    def slots(job: Any) -> int:
        n = int(max_parallel or job.unit.model["max_parallel"])
        return min(n, int(cap)) if cap else n

    workers = int(getattr(launcher, "max_workers", 1) or 1) if local else None
    _, eta = sweep_eta(to_run, slots, workers)
    lines = [eta] if eta else []
    limits = sorted(planner.time_limits.items())
    for model, (minutes, why) in limits[:10]:
        lines.append(f"timeout_min=auto: {model}: {minutes} min ({why})")
    if len(limits) > 10:
        lines.append(f"timeout_min=auto: ... and {len(limits) - 10} more model settings (the plan's RESOURCES column shows each job's)")
    return lines


def _report_errors(errors: list[Any]) -> None:
    """Each distinct planning error once, with the jobs it affects."""
    by_reason: dict[str, list[Any]] = {}
    for j in errors:
        by_reason.setdefault(j.detail, []).append(j)
    for reason, js in by_reason.items():
        first = js[0].unit
        more = f" (and {len(js) - 1} more job{'s' if len(js) > 2 else ''})" if len(js) > 1 else ""
        print(f"fewshot-eval: error: {first.model_key} x {first.task_key} nshot={first.nshot}{more}: {reason}", file=sys.stderr)


ConfigStore.instance().store(group="hydra/sweeper", name="fewshot", node=FewshotSweeperConf, provider="fewshot_eval")

"""The job body: what runs for one (model setting, task setting, nshot[, trial]) -- locally or on a node.

    main(cfg) -> resolve the job (plan.unit) -> run its missing trials (evaluate) -> write (store)
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fewshot_eval import progress
from fewshot_eval.config import JOB_LOG_ENV, SWEEP_JOB_ENV, ConfigError, config_dirs, override_keys, run_values
from fewshot_eval.faults import fault_point
from fewshot_eval.outcome import Outcome
from fewshot_eval.plan.checks import check_job_keys
from fewshot_eval.plan.unit import JobUnit, handed_unit, resolve_unit
from fewshot_eval.store import layout
from fewshot_eval.store.atomic import batched_fsync, clean_temp_files, fsync_pending, write_json, write_text
from fewshot_eval.store.config_yaml import config_yaml
from fewshot_eval.store.failures import clear_failures, error_line, record_failure
from fewshot_eval.store.locks import ResultBusy, claim_trials, locked, move_aside, set_aside, writing
from fewshot_eval.store.markers import forget_submission
from fewshot_eval.store.repro import repro_info
from fewshot_eval.store.results import prepare_aggregation, write_results, write_trial
from fewshot_eval.store.score_cache import remove_score_cache
from fewshot_eval.store.status import COMPLETE, STALE, result_status

log = logging.getLogger("fewshot_eval")

def _job_unit(cfg: DictConfig, overrides: list[str]) -> JobUnit:
    """This job's unit: the planner's when the launcher handed it over for exactly these overrides
    (plan.unit.planned_unit), else resolved from ``cfg``."""
    return handed_unit(overrides) or unit_from_config(cfg)


def unit_from_config(cfg: DictConfig) -> JobUnit:
    """Resolve the job that ``cfg`` (a composed job config) describes."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    choices, overrides, run = hc.runtime.choices, list(hc.overrides.task), run_values(cfg)
    check_job_keys(run, choices, overrides)
    return resolve_unit(choices["model"], choices["task"], cfg.model, cfg.task, run, override_keys(overrides), Path(hc.runtime.cwd), config_dirs())


def _header(unit: JobUnit) -> dict[str, Any]:
    return {
        "fingerprint": unit.fingerprint,
        "identity_digest": unit.id_digest,  # the dir's name ends with its first 8 characters (store.status.foreign)
        "weights": unit.weights,
        "model": unit.model_key,
        "model_name": unit.model["name"],
        "task_setting": unit.task_key,
        "run_name": unit.task["run_name"],
        "tasks": unit.task["tasks"],
        "nshot": unit.nshot,
        "params": unit.params,
    }


def run_unit(unit: JobUnit, cfg: DictConfig | None, overrides: list[str], cwd: Path, override_completed: bool) -> dict[str, Any]:
    """Run the missing trials of ``unit``, then aggregate when all its trials exist. Returns a summary."""
    tag = f"{progress.job_prefix}{unit.model_key} x {unit.task_key} nshot={unit.nshot}"
    fault_point("job-start")  # FEWSHOT_FAULT=full-job-start: the disk fills up now (tests)
    if not unit.applicable:
        log.info("skip %s: %s", tag, unit.reason)
        return {"status": Outcome.SKIPPED.value, "reason": unit.reason}
    status = result_status(unit.result_dir, unit.expected, unit.all_trials, unit.weights)
    if status.state in (COMPLETE, STALE) and not override_completed:
        log.info("skip %s: %s (%s)", tag, status.state, unit.result_dir)
        return {"status": Outcome.SKIPPED.value, "reason": status.state, "result_dir": str(unit.result_dir)}
    if status.state in (COMPLETE, STALE) or (override_completed and status.done_trials) or status.aside:
        still = None
        if status.aside and not override_completed:  # another job of this sweep may have moved it and started anew
            def still() -> bool:
                return result_status(unit.result_dir, unit.expected, unit.all_trials, unit.weights).aside
        try:
            moved = move_aside(unit.result_dir, still)
        except ResultBusy as e:
            log.info("skip %s: %s", tag, e)
            return {"status": Outcome.ELSEWHERE.value, "reason": str(e)}
        if moved is not None:
            why = f"corrupt: {status.corrupt}" if status.aside else "override_completed=true"
            log.warning("%s: moved the old result to %s (%s)", tag, moved, why)
    start = time.time()
    started_at = datetime.now().astimezone().isoformat(timespec="milliseconds")
    repro = repro_info(cwd, overrides)  # slow parts (git) before the trials, not between the last trial and results.json
    prepare_aggregation(len(unit.all_trials))
    # the job's writes are fsynced together: after its first files and each trial (fsync_pending) and at its end
    with writing(unit.result_dir), claim_trials(unit.result_dir, unit.trials) as held, batched_fsync():
        clean_temp_files(unit.result_dir)  # temp files of killed writes (only old ones: never a live writer's)
        done = result_status(unit.result_dir, unit.expected, unit.all_trials, unit.weights).done_trials  # finished meanwhile?
        todo = [t for t in held if t not in done]
        elsewhere = [t for t in unit.trials if t not in held and t not in done]
        if elsewhere and not todo:
            log.info("skip %s: another process is running it (%s)", tag, unit.result_dir)
            return {"status": Outcome.ELSEWHERE.value, "reason": "running elsewhere", "result_dir": str(unit.result_dir)}
        if elsewhere:
            log.info("%s: trials %s run in another process", tag, elsewhere)
        for t in todo:  # a trial dir that is a file: kept aside, never deleted
            set_aside(layout.trial_dir(unit.result_dir, t), lambda p: not p.is_dir())
        write_json(unit.result_dir / layout.IDENTITY, {"fingerprint": unit.fingerprint, **unit.identity})
        if cfg is not None:
            write_text(unit.result_dir / layout.CONFIG, config_yaml(cfg, resolve=True))  # OmegaConf.to_yaml's text
        eval_s = 0.0
        if todo:
            from fewshot_eval.evaluate import build_evaluator

            t0 = time.perf_counter()
            try:
                evaluator = build_evaluator(unit.model, unit.params, unit.result_dir, unit.weights)
                for i, t in enumerate(todo, 1):
                    progress.trial_tag = f"trial {t} ({i}/{len(todo)})"  # evaluate/runner logs it with examples/s
                    result = evaluator.run_trial(unit.task["tasks"], unit.params, unit.nshot, t)
                    write_trial(unit.result_dir, t, result, unit.fingerprint, unit.weights)
                    fsync_pending()  # a finished trial is on disk before the next one starts
                    fault_point("after-trial")  # FEWSHOT_FAULT=kill-after-trial:<n> (tests)
            except Exception as e:  # recorded so that the planner bounds retries; then the job fails as before
                record_failure(unit.result_dir, error_line(e), unit.config_digest, job_id=_job_id(), log=_log_path(), exc=e)
                raise
            eval_s = time.perf_counter() - t0
        with locked(unit.result_dir / layout.LOCK, wait=True):  # split trials: the last one to finish aggregates
            finished = result_status(unit.result_dir, unit.expected, unit.all_trials, unit.weights)
            wall = time.time() - start
            # aggregate once all trials are done; again when this job recomputed a trial (files were broken)
            if set(finished.done_trials) >= set(unit.all_trials) and (finished.state != COMPLETE or todo):
                if finished.corrupt:  # not this result's: kept aside (never deleted), then aggregated anew
                    moved = set_aside(unit.result_dir / layout.RESULTS)
                    log.warning("%s: %s: moved it to %s", tag, finished.corrupt, moved)
                record = {
                    **_header(unit),
                    "wall_time_s": round(wall, 3),
                    "eval_time_s": round(eval_s, 4),
                    "timed_trials": todo,  # the trials these times cover (a resumed or split job ran only some)
                    "started_at": started_at,
                    "finished_at": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                    "repro": repro,
                }
                write_results(unit.result_dir, record, unit.all_trials)
                clear_failures(unit.result_dir)
                if not unit.params.get("keep_score_cache"):
                    remove_score_cache(unit.result_dir)
            forget_submission(unit.result_dir, unit.trials)
    log.info("done %s: trials %s in %.1fs -> %s", tag, todo, wall, unit.result_dir)
    return {"status": Outcome.RAN.value, "trials": todo, "result_dir": str(unit.result_dir), "wall_time_s": wall}


def _job_id() -> str | None:
    """The SLURM job id (``<array>_<index>`` for array tasks), or None outside SLURM."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def _log_path() -> str | None:
    """Where this job's output goes: submitit's stderr file on SLURM, the job.log of local_parallel."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
        try:
            import submitit

            return str(submitit.JobEnvironment().paths.stderr)
        except Exception:  # noqa: BLE001 - best effort
            return None
    return os.environ.get(JOB_LOG_ENV)


def check_planned(cfg: DictConfig, unit: JobUnit) -> None:
    """Refuse to write when this job resolves to another result than the sweep planned for it
    (configs or data changed between planning and the job's start)."""
    planned = cfg.get("planned_id")
    if planned and not unit.id_digest.startswith(str(planned)):
        raise ConfigError(
            f"{unit.model_key} x {unit.task_key} nshot={unit.nshot}: this job resolves to result {unit.id_digest[:16]} "
            f"but the sweep planned {planned} (a config file changed after planning?); nothing written. "
            f"Re-run the sweep to plan it again."
        )


def main(cfg: DictConfig) -> dict[str, Any]:
    """The Hydra task function."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode == RunMode.RUN and hc.sweeper.get("params") and not os.environ.get(SWEEP_JOB_ENV):
        presets = [f"{g}={hc.runtime.choices[g]}" for g in ("models", "tasks", "experiment") if hc.runtime.choices.get(g)]
        raise ConfigError(
            f"{' '.join(presets) or 'This config'} defines a sweep ({dict(hc.sweeper.params)}); add -m to run it, "
            f"e.g. fewshot-eval -m {' '.join(presets)}"
        )
    from fewshot_eval.evaluate.hub_cache import forced_offline

    with forced_offline(bool(cfg.get("hf_offline"))):  # the sweep found every hub input cached: no network
        overrides = list(hc.overrides.task)
        unit = _job_unit(cfg, overrides)
        check_planned(cfg, unit)
        return run_unit(unit, cfg, overrides, Path(hc.runtime.cwd), bool(cfg.override_completed))

"""The job body: what runs for one (model setting, task setting, nshot[, trial]) -- locally or on a node."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from fewshot_eval.config import ConfigError, config_dirs
from fewshot_eval.launch.pending import forget_submission
from fewshot_eval.plan.unit import JobUnit, resolve_unit
from fewshot_eval.store import layout
from fewshot_eval.store.atomic import write_json, write_text
from fewshot_eval.store.repro import repro_info
from fewshot_eval.store.results import aggregate, write_trial
from fewshot_eval.store.status import COMPLETE, STALE, result_status

log = logging.getLogger("fewshot_eval")

SCHEDULER_KEYS = ("model", "task", "hydra")

# Set by a launcher that runs jobs in this process: "[3/18] " in front of each job's log line.
progress = ""


def override_keys(overrides: list[str]) -> list[str]:
    """Top-level keys named by Hydra override strings (``+a=1`` -> ``a``; dotted keys and groups excluded)."""
    keys = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if "." not in key and "/" not in key and "@" not in key:
            keys.append(key)
    return keys


def run_values(cfg: DictConfig) -> dict[str, Any]:
    """The resolved top-level run/eval values of a composed config (model, task and hydra left out)."""
    out = {}
    for k in cfg:
        if k in SCHEDULER_KEYS:
            continue
        v = cfg[k]
        out[k] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
    return out


def unit_from_config(cfg: DictConfig) -> JobUnit:
    """Resolve the job that ``cfg`` (a composed job config) describes."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    choices = hc.runtime.choices
    run = run_values(cfg)
    return resolve_unit(
        choices["model"],
        choices["task"],
        cfg.model,
        cfg.task,
        run,
        override_keys(list(hc.overrides.task)),
        Path(hc.runtime.cwd),
        config_dirs(),
    )


@contextmanager
def locked(path: Path, wait: bool = False) -> Iterator[bool]:
    """Hold an exclusive lock on ``path``; yields False when another process holds it (unless ``wait``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextmanager
def claim_trials(result_dir: Path, trials: list[int]) -> Iterator[list[int]]:
    """Lock each trial of a result dir; yields the trials this process holds (the others run elsewhere).

    One lock per trial lets split-trial jobs of one result dir run at the same time."""
    with ExitStack() as stack:
        held = [t for t in trials if stack.enter_context(locked(result_dir / f"{layout.LOCK}.trial{t}"))]
        yield held


def move_aside(result_dir: Path) -> Path:
    """Rename an old result out of the way (never delete it); returns the new path."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = result_dir.with_name(f"{result_dir.name}.old-{stamp}")
    n = 1
    while target.exists():
        target = result_dir.with_name(f"{result_dir.name}.old-{stamp}-{n}")
        n += 1
    result_dir.rename(target)
    return target


def run_unit(unit: JobUnit, cfg: DictConfig | None, overrides: list[str], cwd: Path, override_completed: bool) -> dict[str, Any]:
    """Run the missing trials of ``unit``, then aggregate when all its trials exist. Returns a summary."""
    tag = f"{progress}{unit.model_key} x {unit.task_key} nshot={unit.nshot}"
    if not unit.applicable:
        log.info("skip %s: %s", tag, unit.reason)
        return {"status": "skipped", "reason": unit.reason}
    status = result_status(unit.result_dir, unit.fingerprint, unit.all_trials)
    if status.state in (COMPLETE, STALE) and not override_completed:
        log.info("skip %s: %s (%s)", tag, status.state, unit.result_dir)
        return {"status": "skipped", "reason": status.state, "result_dir": str(unit.result_dir)}
    if status.state in (COMPLETE, STALE) or (override_completed and status.done_trials):
        moved = move_aside(unit.result_dir)
        log.info("%s: moved the old result to %s (override_completed=true)", tag, moved)
    start = time.time()
    started_at = datetime.now().astimezone().isoformat(timespec="milliseconds")
    with claim_trials(unit.result_dir, unit.trials) as held:
        done = result_status(unit.result_dir, unit.fingerprint, unit.all_trials).done_trials  # finished meanwhile?
        todo = [t for t in held if t not in done]
        elsewhere = [t for t in unit.trials if t not in held and t not in done]
        if elsewhere and not todo:
            log.info("skip %s: another process is running it (%s)", tag, unit.result_dir)
            return {"status": "skipped", "reason": "running elsewhere"}
        if elsewhere:
            log.info("%s: trials %s run in another process", tag, elsewhere)
        write_json(unit.result_dir / layout.IDENTITY, {"fingerprint": unit.fingerprint, **unit.identity})
        if cfg is not None:
            write_text(unit.result_dir / layout.CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
        eval_s = 0.0
        if todo:
            from fewshot_eval.evaluate import build_evaluator

            t0 = time.perf_counter()
            evaluator = build_evaluator(unit.model, unit.params)
            for t in todo:
                result = evaluator.run_trial(unit.task["tasks"], unit.params, unit.nshot, t)
                write_trial(unit.result_dir, t, result, unit.fingerprint)
            eval_s = time.perf_counter() - t0
    with locked(unit.result_dir / layout.LOCK, wait=True):  # split trials: the last one to finish aggregates
        finished = result_status(unit.result_dir, unit.fingerprint, unit.all_trials)
        wall = time.time() - start
        if set(finished.done_trials) >= set(unit.all_trials) and finished.state != COMPLETE:
            write_json(
                unit.result_dir / layout.RESULTS,
                {
                    "fingerprint": unit.fingerprint,
                    "model": unit.model_key,
                    "model_name": unit.model["name"],
                    "task_setting": unit.task_key,
                    "run_name": unit.task["run_name"],
                    "tasks": unit.task["tasks"],
                    "nshot": unit.nshot,
                    "trials": unit.all_trials,
                    "params": unit.params,
                    "results": aggregate(unit.result_dir, unit.all_trials),
                    "wall_time_s": round(wall, 3),
                    "eval_time_s": round(eval_s, 4),
                    "started_at": started_at,
                    "finished_at": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                    "repro": repro_info(cwd, overrides),
                },
            )
        forget_submission(unit.result_dir, unit.trials)
    log.info("done %s: trials %s in %.1fs -> %s", tag, todo, wall, unit.result_dir)
    return {"status": "ran", "trials": todo, "result_dir": str(unit.result_dir), "wall_time_s": wall}


def main(cfg: DictConfig) -> dict[str, Any]:
    """The Hydra task function."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from fewshot_eval.launch.local import SWEEP_JOB_ENV

    hc = HydraConfig.get()
    if hc.mode == RunMode.RUN and hc.sweeper.get("params") and not os.environ.get(SWEEP_JOB_ENV):
        presets = [f"{g}={hc.runtime.choices[g]}" for g in ("models", "tasks", "experiment") if hc.runtime.choices.get(g)]
        raise ConfigError(
            f"{' '.join(presets) or 'This config'} defines a sweep ({dict(hc.sweeper.params)}); add -m to run it, "
            f"e.g. python -m fewshot_eval -m {' '.join(presets)}"
        )
    unit = unit_from_config(cfg)
    return run_unit(unit, cfg, list(hc.overrides.task), Path(hc.runtime.cwd), bool(cfg.override_completed))

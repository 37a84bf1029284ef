"""Resolve one job -- (model setting, task setting, nshot[, trial]) -- to its params and result location.

The planner (before launch) and the job itself (at start) both call :func:`resolve_unit`, so
they always agree on where a result lives and whether it is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from fewshot_eval.config import ConfigError, effective_params, find_config_file
from fewshot_eval.plan.checks import check_run_values
from fewshot_eval.plan.identity import digest, job_identity, task_data_digest
from fewshot_eval.settings import model_setting, task_setting
from fewshot_eval.store import layout


@dataclass
class JobUnit:
    model_key: str
    task_key: str
    model: dict[str, Any]
    task: dict[str, Any]
    params: dict[str, Any]
    nshot: int
    trials: list[int]  # the trials this job produces
    all_trials: list[int]  # the trials that make the result complete
    result_dir: Path
    identity: dict[str, Any]
    fingerprint: str
    applicable: bool = True
    reason: str = ""


@lru_cache(maxsize=1024)
def _data_digest(search: tuple[Path, ...], name: str) -> str:
    return task_data_digest(find_config_file("task_def", name, search))


def output_root(run: Mapping[str, Any], cwd: Path) -> Path:
    out = Path(str(run["output_dir"])).expanduser()
    return out if out.is_absolute() else (cwd / out)


def resolve_unit(
    model_key: str,
    task_key: str,
    model_node: Any,
    task_node: Any,
    run: Mapping[str, Any],
    cli_keys: Sequence[str],
    cwd: Path,
    search: Sequence[Path],
    *,
    model: dict[str, Any] | None = None,
    task: dict[str, Any] | None = None,
) -> JobUnit:
    """Layer the params, validate, and locate the result of one job.

    ``run`` holds the top-level config values (command-line values applied), ``cli_keys`` the
    top-level keys set on the command line or by the sweep. Pre-validated ``model``/``task``
    dicts may be passed to save re-validation.
    """
    model = model if model is not None else model_setting(model_node, model_key)
    task = task if task is not None else task_setting(task_node, task_key)
    cli = {k: run[k] for k in cli_keys if k in run}
    params = effective_params(
        run, model["eval"], task["eval"], run.get("final_overrides") or {}, cli, model_key=model_key, task_key=task_key
    )
    params["predictor"] = params.get("predictor") or model["predictor"]
    check_run_values(run, params)
    nshot = run["nshot"]
    if not isinstance(nshot, int) or isinstance(nshot, bool) or nshot < -1:
        raise ConfigError(f"nshot must be an integer >= -1 (-1 = the whole train set), got {nshot!r}.")
    num_trials = params["num_trials"]
    if not isinstance(num_trials, int) or num_trials < 1:
        raise ConfigError(f"num_trials must be an integer >= 1, got {num_trials!r}.")
    all_trials = [0] if nshot == 0 else list(range(num_trials))
    trial = run.get("trial")
    trials = all_trials if trial is None else [trial]
    if trial is not None and trial not in all_trials:
        raise ConfigError(f"trial={trial} is outside this job's trials {all_trials} (num_trials={num_trials}, nshot={nshot}).")

    identity = job_identity(model, task["tasks"], params, nshot)
    id_digest = digest(identity)
    search_t = tuple(search)
    fingerprint = digest([id_digest] + [_data_digest(search_t, t) for t in task["tasks"]])
    rdir = layout.result_dir(output_root(run, cwd), task["run_name"], model_key, task_key, nshot, id_digest)

    allowed = params.get("allowed_nshot")
    applicable, reason = True, ""
    if allowed is not None and nshot not in allowed:
        applicable, reason = False, f"task setting '{task_key}' runs only with nshot in {allowed}"
    return JobUnit(model_key, task_key, model, task, params, nshot, trials, all_trials, rdir, identity, fingerprint, applicable, reason)

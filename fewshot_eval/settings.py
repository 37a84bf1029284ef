"""Schemas of model and task settings (``conf/model/*.yaml``, ``conf/task/*.yaml``).

Files hold only what differs from these defaults; :func:`model_setting` and
:func:`task_setting` validate a loaded node and return plain dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fewshot_eval.config import ConfigError, check_eval_keys

PREDICTORS = ("clm", "random", "majority")


@dataclass
class Resources:
    """SLURM resources of one job of this model's pool."""

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    cpus_per_task: int = 1
    mem_gb: Optional[int] = None
    timeout_min: int = 60


@dataclass
class JobParams:
    combine_tasks: bool = False  # all selected task settings (and nshot values) of this model in one job


@dataclass
class ModelSetting:
    name: str = "???"  # display name, used in result paths and tables
    predictor: str = "clm"  # clm | random | majority
    weights: Optional[str] = None  # local dir, hub id or 'tiny-gpt2' (built locally); null for baselines
    revision: Optional[str] = None  # hub revision / checkpoint tag, part of the result identity
    eval: dict = field(default_factory=dict)  # evaluation params of this model (train_sep, max_length, ...)
    job: JobParams = field(default_factory=JobParams)
    resources: Resources = field(default_factory=Resources)
    max_parallel: int = 4  # at most this many jobs of this model's pool at once
    description: str = ""


@dataclass
class TaskSetting:
    run_name: str = "???"  # results folder prefix; settings with the same run_name share a folder tree
    tasks: list = field(default_factory=list)  # task definitions (conf/task_def/<name>.yaml) evaluated
    eval: dict = field(default_factory=dict)  # evaluation params (templates, calibrator, scoring, allowed_nshot, ...)
    description: str = ""


# Parts of a model setting that cannot change the numbers.
MODEL_NON_IDENTITY = ("job", "resources", "max_parallel", "description", "name")


def _validate(schema: type, node: Any, where: str) -> dict[str, Any]:
    if node is None:
        raise ConfigError(f"{where} is empty.")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        data = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        raise ConfigError(f"{where}: bad value for key '{key}': {e.msg if hasattr(e, 'msg') else e}") from None
    assert isinstance(data, dict)
    return data


def model_setting(node: DictConfig | dict, key: str) -> dict[str, Any]:
    """Validate one model setting; errors name ``model/<key>.yaml`` and the key."""
    where = f"model/{key}.yaml"
    data = _validate(ModelSetting, node, where)
    if data["predictor"] not in PREDICTORS:
        raise ConfigError(f"{where}: unknown predictor '{data['predictor']}'. Valid: {', '.join(PREDICTORS)}.")
    if data["predictor"] == "clm" and not data["weights"]:
        raise ConfigError(f"{where}: predictor 'clm' needs 'weights' (a local dir, a hub id, or 'tiny-gpt2').")
    if data["max_parallel"] < 1:
        raise ConfigError(f"{where}: max_parallel must be >= 1, got {data['max_parallel']}.")
    check_eval_keys(data["eval"], f"{where} key 'eval'")
    return data


def task_setting(node: DictConfig | dict, key: str) -> dict[str, Any]:
    """Validate one task setting; errors name ``task/<key>.yaml`` and the key."""
    where = f"task/{key}.yaml"
    data = _validate(TaskSetting, node, where)
    if not data["tasks"] or not all(isinstance(t, str) for t in data["tasks"]):
        raise ConfigError(f"{where}: 'tasks' must be a non-empty list of task names, got {data['tasks']!r}.")
    check_eval_keys(data["eval"], f"{where} key 'eval'")
    allowed = data["eval"].get("allowed_nshot")
    if allowed is not None:
        allowed = [allowed] if isinstance(allowed, int) else list(allowed)
        if any((not isinstance(n, int)) or n < -1 for n in allowed):
            raise ConfigError(f"{where}: eval.allowed_nshot must be integers >= -1, got {allowed!r}.")
        data["eval"]["allowed_nshot"] = allowed
    return data

"""Where the configs live, and how a job's effective evaluation parameters are layered.

Precedence, lowest to highest (the one place it is defined):

1. run params          -- top-level keys of ``conf/config.yaml``
2. experiment base     -- top-level keys set by ``experiment=<name>`` (it is applied after ``config.yaml``)
3. model setting       -- ``model.eval`` of ``conf/model/<key>.yaml``
4. task setting        -- ``task.eval`` of ``conf/task/<key>.yaml``
5. experiment final    -- ``final_overrides`` of the experiment file
6. command line        -- ``key=value`` overrides, swept values (``nshot=0,32``) included
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from hydra.errors import CompactHydraException

PACKAGE_DIR = Path(__file__).resolve().parent

# Evaluation parameters: the keys that model settings (``model.eval``), task settings
# (``task.eval``) and experiments (``final_overrides``) may set. Each has a top-level
# default in conf/config.yaml.
EVAL_KEYS: tuple[str, ...] = (
    "allowed_nshot",
    "num_trials",
    "seed",
    "scoring",
    "predictor",
    "calibrator",
    "calibration_options",
    "templates",
    "languages",
    "train_languages",
    "train_set",
    "eval_set",
    "train_sep",
    "description",
    "balanced",
    "n_eval_samples",
    "max_length",
    "batch_size",
    "dtype",
    "device",
    "unconditional_prompt",
    "keep_score_cache",
    "demo_sampling",
    "max_new_tokens",
    "until",
    "do_sample",
    "temperature",
    "extra_metrics",
)

# Eval params that cannot change the numbers: left out of a result's identity.
NON_NUMERIC_KEYS: frozenset[str] = frozenset({"num_trials", "batch_size", "device", "allowed_nshot", "keep_score_cache"})

# Run params that steer the scheduler, not the evaluation.
RUN_KEYS: tuple[str, ...] = (
    "output_dir", "nshot", "split_trials", "trial", "override_completed", "dry_run", "max_parallel",
    "max_failures", "retry_failed", "planned_id", "checkpoint", "prefetch", "hf_offline", "job_list",
    "verify",
)

# Run params the sweep adds to a job's overrides itself: left out of ${hydra.job.override_dirname}
# (conf/config.yaml lists them in hydra.job.config.override_dirname.exclude_keys too).
INTERNAL_OVERRIDES: tuple[str, ...] = ("planned_id", "hf_offline")

# Top-level keys of a composed job config that are not run/eval values.
SCHEDULER_KEYS: tuple[str, ...] = ("model", "task", "hydra", "site")

# Set in the environment of a job started by a launcher: it runs one job of a sweep
# (so a preset without -m is not refused there).
SWEEP_JOB_ENV = "FEWSHOT_EVAL_SWEEP_JOB"
# The log file of a job process (set by local_parallel), recorded with a failure.
JOB_LOG_ENV = "FEWSHOT_EVAL_JOB_LOG"


class ConfigError(CompactHydraException, ValueError):
    """A user-facing configuration error; the message says what is wrong and what to do."""


def conf_dir() -> Path:
    """The packaged config directory: ``fewshot_eval/conf`` in a wheel, ``<repo>/conf`` in a checkout."""
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(f"fewshot-eval's config directory is missing (looked in {PACKAGE_DIR / 'conf'}); reinstall the package.")


def cache_dir() -> Path:
    """fewshot-eval's own cache (the tiny model, lm-eval's task index): ``$FEWSHOT_EVAL_CACHE``, default ``~/.cache/fewshot_eval``."""
    import os

    return Path(os.environ.get("FEWSHOT_EVAL_CACHE") or Path.home() / ".cache" / "fewshot_eval")


def config_dirs() -> list[Path]:
    """Config directories in Hydra's search order: user dirs (``--config-dir``, ``hydra.searchpath``) then the packaged one."""
    dirs: list[Path] = []
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            for src in HydraConfig.get().runtime.config_sources:
                if src.schema == "file":
                    dirs.append(Path(src.path))
    except Exception:  # pragma: no cover - outside a Hydra run
        pass
    packaged = conf_dir()
    if packaged not in dirs:
        dirs.append(packaged)
    return dirs


def find_config_file(group: str, name: str, search: Iterable[Path] | None = None) -> Path:
    """Find ``<group>/<name>.yaml`` in the config search path; a missing one lists the available names."""
    dirs = list(search) if search is not None else config_dirs()
    for d in dirs:
        path = d / group / f"{name}.yaml"
        if path.is_file():
            return path
    available = sorted({p.stem for d in dirs for p in (d / group).glob("*.yaml") if not p.stem.startswith("_")})
    raise ConfigError(
        f"Unknown {group} '{name}'{closest(name, available)}. Available: {', '.join(available) or '(none)'}. "
        f"Add {group}/{name}.yaml to a config dir (--config-dir) or pick one of these."
    )


def closest(name: str, names: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``names`` (difflib), or ''."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(n) for n in names], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_eval_keys(section: Mapping[str, Any] | None, where: str) -> None:
    """Reject unknown evaluation-parameter keys, naming the file/key and the valid ones."""
    for key in section or {}:
        if key not in EVAL_KEYS:
            raise ConfigError(f"{where}: unknown evaluation parameter '{key}'{closest(key, EVAL_KEYS)}. Valid keys: {', '.join(EVAL_KEYS)}.")


def check_keys(node: Any, allowed: Mapping[str, bool] | Iterable[str], where: str) -> dict:
    """``node`` as a mapping whose keys are all in ``allowed`` (a key list, or key -> required):
    anything else is an error naming ``where``, the key and the valid keys."""
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(node).__name__} {node!r}.")
    allowed_map = allowed if isinstance(allowed, Mapping) else {k: False for k in allowed}
    for key in node:
        if key not in allowed_map:
            raise ConfigError(f"{where}: unknown key '{key}'. Valid keys: {', '.join(allowed_map)}.")
    for key, required in allowed_map.items():
        if required and key not in node:
            raise ConfigError(f"{where}: missing required key '{key}'.")
    return node


def env_flag(name: str) -> bool:
    """The environment variable ``name`` is set to a true value (1, true, yes, on)."""
    import os

    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def override_keys(overrides: Iterable[str]) -> list[str]:
    """Top-level keys named by Hydra override strings (``+a=1`` -> ``a``; dotted keys and groups excluded)."""
    keys = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if "." not in key and "/" not in key and "@" not in key:
            keys.append(key)
    return keys


def run_values(cfg: Any) -> dict[str, Any]:
    """The resolved top-level run/eval values of a composed config (model, task and hydra left out)."""
    from omegaconf import OmegaConf

    out = {}
    for k in cfg:
        if k in SCHEDULER_KEYS:
            continue
        v = cfg[k]
        out[k] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
    return out


def yaml_safe_load(text: str) -> Any:
    """``yaml.safe_load`` with libyaml's parser where PyYAML has it: the same objects, several times faster
    (a plan reads every task definition of the sweep)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@lru_cache(maxsize=1)
def _packaged_defaults() -> tuple[tuple[str, Any], ...]:
    import yaml

    node = yaml.safe_load((conf_dir() / "config.yaml").read_text(encoding="utf-8")) or {}
    return tuple((k, node.get(k)) for k in EVAL_KEYS)


def default_params() -> dict[str, Any]:
    """The evaluation params' defaults: the top-level keys of the packaged ``conf/config.yaml`` (read once).

    A job's params are complete (:func:`effective_params` starts from them); this is for callers
    that build an evaluator with partial params (the Python API, tests)."""
    return dict(_packaged_defaults())


def eval_param(params: Mapping[str, Any], key: str) -> Any:
    """``params[key]``; when it is missing or null, its default from the packaged ``conf/config.yaml``."""
    value = params.get(key)
    return default_params()[key] if value is None else value


def effective_params(
    run: Mapping[str, Any],
    model_eval: Mapping[str, Any] | None,
    task_eval: Mapping[str, Any] | None,
    final: Mapping[str, Any] | None,
    cli: Mapping[str, Any],
    *,
    model_key: str = "?",
    task_key: str = "?",
) -> dict[str, Any]:
    """Layer the evaluation parameters as the module docstring says; returns a plain dict."""
    check_eval_keys(model_eval, f"model/{model_key}.yaml key 'eval'")
    check_eval_keys(task_eval, f"task/{task_key}.yaml key 'eval'")
    check_eval_keys(final, "experiment key 'final_overrides'")
    params = {k: run.get(k) for k in EVAL_KEYS}
    for layer in (model_eval, task_eval, final):
        params.update(layer or {})
    params.update({k: v for k, v in cli.items() if k in EVAL_KEYS})
    return params

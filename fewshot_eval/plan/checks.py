"""Checks of user input that must fail at planning -- before anything is written or launched.

Each check is a plain function over plain values that raises :class:`ConfigError` with a
one-line message naming the bad value, the valid choices where there is a list, and what to
do. Where they are called:

* :func:`check_plan` -- top of ``Planner.plan``: unknown top-level keys (base config, experiment
  and preset files, every swept override) and SLURM's client commands; :func:`check_job_keys`
  -- the same for a single run (``fewshot_eval.run.job``).
* ``fewshot_eval.param_schema.check_values`` -- ``resolve_unit``: every run and evaluation param's type and
  range (after layering, so a model/task setting's value is checked too), once per distinct setting;
  :func:`check_repeated_keys` -- ``check_plan``: a key given twice on the command line.
* ``fewshot_eval.settings.check_setting_name`` -- names that become directories (model/task settings).
* :func:`check_same_result` -- ``Planner.plan``: two override combinations with one result dir.
* :func:`check_result_layout` -- ``fewshot-eval recalc``: a results.json in the result-dir layout.
* :func:`plan_warnings` / :func:`baseline_warning` -- one warning per sweep instead of one per trial.
"""

from __future__ import annotations

import difflib
import functools
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from fewshot_eval.config import EVAL_KEYS, RUN_KEYS, SCHEDULER_KEYS, ConfigError, conf_dir

# Config groups whose option may put a key of its own name at the top level (a file without
# ``# @package _global_``); the sweep presets are _global_ and add nothing themselves.
GROUP_KEYS: tuple[str, ...] = ("models", "tasks", "experiment")

RESULT_LAYOUT = "<output_dir>/<run_name>/<model>/<task setting>/<nshot>shot.<id>/ holding results.json and identity.json"


def warn(message: str) -> None:
    print(f"fewshot-eval: warning: {message}", file=sys.stderr, flush=True)


# ---- 1. unknown top-level keys ---------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def config_yaml_keys() -> tuple[str, ...]:
    """The top-level keys of the packaged ``conf/config.yaml`` (its ``defaults`` list left out), in file order."""
    import yaml

    data = yaml.safe_load((conf_dir() / "config.yaml").read_text(encoding="utf-8")) or {}
    return tuple(k for k in data if k != "defaults")


def valid_top_level_keys(groups: Iterable[str] = ()) -> list[str]:
    """config.yaml's keys, then model/task/hydra, the preset groups and any other config ``groups``."""
    keys = list(config_yaml_keys())
    for k in (*RUN_KEYS, *EVAL_KEYS, *SCHEDULER_KEYS, *GROUP_KEYS, *groups):
        k = k.split("@")[0]
        if k and "/" not in k and k not in keys:
            keys.append(k)
    return keys


def unknown_key_message(key: str, valid: Sequence[str], where: str = "") -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    shown = [k for k in valid if k not in GROUP_KEYS and k != "allowed_nshot"]
    prefix = f"{where}: " if where else ""
    return (
        f"{prefix}unknown key '{key}'{hint}. Valid top-level keys: {', '.join(shown)}. "
        f"Settings of a model or task go under model./task. (e.g. model.eval.batch_size=4)."
    )


def top_level_key(override: str) -> Optional[str]:
    """The top-level config key an override string sets (``+a.b=1`` -> ``a``); None for config
    group selections (``hydra/launcher=x``, ``a@b=x``)."""
    key = override.split("=", 1)[0].lstrip("+~")
    if not key or "/" in key or "@" in key:
        return None
    return key.split(".", 1)[0]


def check_top_level_keys(keys: Iterable[str], valid: Sequence[str], where: str = "") -> None:
    """Raise for the first key of ``keys`` that is not in ``valid``."""
    valid_set = set(valid)
    for key in keys:
        if key not in valid_set:
            raise ConfigError(unknown_key_message(key, valid, where))


def key_origin(key: str, base_overrides: Sequence[str], preset_files: Mapping[str, Iterable[str]]) -> str:
    """Where an unknown key of the base config came from: a command-line override, or a preset/experiment file."""
    for o in base_overrides:
        if top_level_key(o) == key:
            return f"'{o}'"
    for name, keys in preset_files.items():
        if key in keys:
            return name
    return ""


def check_job_keys(keys: Iterable[str], choices: Mapping[str, Any], overrides: Sequence[str]) -> None:
    """A single job's config (``fewshot-eval key=value ...`` without -m): no unknown top-level keys."""
    valid = valid_top_level_keys(choices)
    for key in keys:
        if key not in set(valid):
            check_top_level_keys([key], valid, key_origin(key, overrides, {}))


def check_plan(planner: Any, combos: Sequence[Sequence[str]]) -> None:
    """The checks that need the whole sweep (called once at the top of ``Planner.plan``)."""
    check_repeated_keys(list(planner.base.hydra.overrides.task))
    choices = dict(planner.choices)
    valid = valid_top_level_keys(choices)
    unknown = [k for k in planner.run if k not in set(valid)]
    if unknown:
        files: dict[str, list[str]] = {}
        for group in GROUP_KEYS:
            if choices.get(group):
                res = planner.loader.repository.load_config(f"{group}/{choices[group]}")
                if res is not None and res.header.get("package") == "_global_":
                    files[f"{group}/{choices[group]}.yaml"] = list(res.config)
        base_overrides = list(planner.base.hydra.overrides.task)
        check_top_level_keys(unknown[:1], valid, key_origin(unknown[0], base_overrides, files))
    preset_keys = set((planner.base.hydra.sweeper.get("params") or {}).keys())
    presets = " ".join(f"{g}={choices[g]}" for g in GROUP_KEYS if choices.get(g))
    seen: set[str] = set()
    for combo in combos:
        for o in combo:
            if o in seen:
                continue
            seen.add(o)
            key = top_level_key(o)
            if key is not None and key not in valid:
                raw_key = o.split("=", 1)[0]
                origin = f"{presets} (hydra.sweeper.params)" if raw_key in preset_keys and presets else f"'{raw_key}={o.split('=', 1)[1] if '=' in o else ''}'"
                check_top_level_keys([key], valid, origin)
    launcher = planner.base.hydra.get("launcher") or {}
    message = check_slurm_client(choices.get("hydra/launcher"), str(launcher.get("_target_", "")), bool(planner.run.get("dry_run")))
    if message:
        warn(message)


# ---- 2. values of run and evaluation params: fewshot_eval/param_schema.py (check_values, from resolve_unit) --------
def check_repeated_keys(overrides: Sequence[str]) -> None:
    """A key given twice on the command line (``task=a task=b``): Hydra keeps only the last one."""
    seen: dict[str, str] = {}
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in seen and "=" in o:
            values = ",".join(x.split("=", 1)[1] for x in (seen[key], o))
            raise ConfigError(f"'{seen[key]}' and '{o}': {key} is given twice and only the last would count. "
                              f"Give it once; to sweep both values write {key}={values} (with -m).")
        seen[key] = o


# ---- 3. names that become directories -------------------------------------------------------
# ---- 4. swept values that give the same result -----------------------------------------------
def _split(o: str) -> tuple[str, str]:
    k, _, v = o.partition("=")
    return k.lstrip("+~"), v


def check_same_result(first: Sequence[str], second: Sequence[str], result_dir: Path) -> None:
    """Two override combinations resolved to one (result dir, trials). Fine if they differ only in
    ``nshot`` (values above the demonstration pool collapse on purpose); otherwise the swept key
    cannot change the numbers and all but one value would be dropped silently."""
    a, b = dict(map(_split, first)), dict(map(_split, second))
    differ = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k) and k != "nshot"]
    if not differ:
        return
    swept = " ".join(f"{k}={a.get(k, '')},{b.get(k, '')}" for k in differ)
    names = ", ".join(differ)
    verb = "is" if len(differ) == 1 else "are"
    raise ConfigError(
        f"{swept}: these values give the same result ({result_dir}): {names} {verb} not part of a result's identity "
        f"(model weights/predictor/revision, tasks, numeric eval params, nshot), so only one would run. "
        f"Set {names} once instead of sweeping it."
    )


# ---- 5. recalc's input ----------------------------------------------------------------------
def check_result_layout(result_dir: Path, results: Any) -> None:
    """``results`` (the parsed results.json of ``result_dir``) must be a fewshot-eval result in its layout:
    recalc writes next to it, under ``result_dir.parents[3]``."""
    keys = ("run_name", "model", "task_setting", "nshot", "tasks", "trials", "params", "fingerprint")
    if not isinstance(results, dict) or any(k not in results for k in keys):
        raise ConfigError(f"{result_dir / 'results.json'} is not a fewshot-eval result (a result dir looks like {RESULT_LAYOUT}).")
    parts = result_dir.parts
    expected = (str(results["run_name"]), str(results["model"]), str(results["task_setting"]))
    if len(parts) < 5 or tuple(parts[-4:-1]) != expected or not re.fullmatch(rf"{re.escape(str(results['nshot']))}shot\.[0-9a-f]+", parts[-1]):
        raise ConfigError(
            f"{result_dir} is not in fewshot-eval's result layout ({RESULT_LAYOUT}; here "
            f"<run_name>/<model>/<task setting> would be {'/'.join(expected)}): recalc writes next to it, so move it back into that layout."
        )


# ---- 6. SLURM's client commands -------------------------------------------------------------
def check_slurm_client(launcher: Optional[str], target: str, dry_run: bool, which: Callable[[str], Optional[str]] = shutil.which) -> Optional[str]:
    """Raise (or, for a dry run, return a warning) when the SLURM launcher is selected and ``sbatch`` is not on PATH."""
    if launcher != "submitit_slurm" and not target.endswith("SlurmPoolLauncher"):
        return None
    if which("sbatch"):
        return None
    message = (
        "sbatch not found: hydra/launcher=submitit_slurm needs SLURM's client commands on PATH "
        "(run on a login node), or use hydra/launcher=local"
    )
    if dry_run:
        return message + " (dry run: showing the plan anyway)."
    raise ConfigError(message + ".")


# ---- 7. warnings once per sweep -------------------------------------------------------------
def baseline_warning(predictor: Any, scoring: Any, calibrator: Any) -> Optional[str]:
    """The warning for a baseline predictor with scoring/calibration set (they are ignored), or None."""
    from fewshot_eval.evaluate.registry import predictor_class

    try:
        if predictor_class(str(predictor)).is_lm:  # scoring and calibration apply to language models only
            return None
    except ConfigError:  # an unknown predictor is reported on the job's row
        return None
    unused = ([f"scoring={scoring}"] if scoring not in (None, "sum") else []) + ([f"calibrator={calibrator}"] if calibrator else [])
    if not unused:
        return None
    return f"predictor '{predictor}' is a baseline: {' and '.join(unused)} ignored (baselines use their own scores)."


def plan_warnings(jobs: Sequence[Any], found: Iterable[str] = ()) -> list[str]:
    """Distinct warnings about the planned jobs (``PlannedJob``s), each once, in plan order; ``found``: those
    of the planning checks (``Planner.warnings``: empty data, repeated ids)."""
    out: dict[str, None] = dict.fromkeys(found)
    seen: dict[int, Any] = {}  # the jobs of one setting share its params: asked once
    for j in jobs:
        p = j.unit.params
        if seen.get(id(p)) is p:
            continue
        seen[id(p)] = p
        w = baseline_warning(p.get("predictor"), p.get("scoring"), p.get("calibrator"))
        if w:
            out[w] = None
    return list(out)


def print_plan_warnings(jobs: Sequence[Any], found: Iterable[str] = ()) -> None:
    for w in plan_warnings(jobs, found):
        warn(w)

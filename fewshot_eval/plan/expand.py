"""Expand sweep presets and command-line overrides into the cartesian product of jobs.

    model=a,b task=x nshot=0,32   ->   4 jobs
    models=<group>                ->   the group's ``hydra.sweeper.params.model`` string, e.g. "a,b"
    models=<g1>,<g2>              ->   the union of both groups' models (first appearance first)
    model=<run with checkpoints>  ->   one job per checkpoint, named '<run>__step<N>' (checkpoint=<N>)
    job_list=missing.csv          ->   the list's rows, one job each (fewshot_eval/plan/job_list.py)

Command-line values override a preset's (``models=all model=a`` runs only ``a``).
"""

from __future__ import annotations

import functools
import re
import weakref
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override

from fewshot_eval.config import ConfigError

_LOADED: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()  # repository -> {path: load_config's}

PRESET_GROUPS = ("models", "tasks", "experiment")
SETTING_GROUPS = ("model", "task")


def preset_overrides(params: Mapping[str, Any] | None, choices: Mapping[str, Any]) -> list[str]:
    """``hydra.sweeper.params`` as override strings; a YAML list there is an error, not one silent job."""
    where = " ".join(f"{g}={choices[g]}" for g in PRESET_GROUPS if choices.get(g)) or "hydra.sweeper.params"
    out = []
    for key, value in (params or {}).items():
        if isinstance(value, (list, tuple, dict)) or hasattr(value, "keys") or (hasattr(value, "__len__") and not isinstance(value, str)):
            raise ConfigError(
                f"{where}: hydra.sweeper.params.{key} must be a sweep string like 'a,b,c', got a YAML "
                f"{type(value).__name__} {list(value) if not hasattr(value, 'keys') else dict(value)}. Write it as: {key}: "
                f"{','.join(map(str, value)) if not hasattr(value, 'keys') else '...'}"
            )
        if value is None:
            continue
        out.append(f"{key}={value}")
    return out


def expand(params: Mapping[str, Any] | None, arguments: Sequence[str], config_loader: Any, choices: Mapping[str, Any]) -> list[list[str]]:
    """All job override lists, presets first so that command-line values replace theirs.

    A swept preset (``models=a,b``) is replaced by the union of its presets' sweeps, placed before
    the base config's sweep params: as with one preset, an experiment's or another preset's values
    and command-line values win over it."""
    from fewshot_eval.plan.job_list import job_list_combos

    listed = job_list_combos(arguments)  # job_list=<file>: its rows are the combinations (plan/job_list.py)
    if listed is not None:
        return expand_checkpoints(listed, str(choices.get("model")), functools.cache(lambda key: _checkpoint_fields(config_loader, key)))
    parser = OverridesParser.create(config_loader=config_loader)
    args = parser.parse_overrides(list(arguments))
    unions: list[str] = []
    kept: list[Override] = []
    for o in args:
        key = o.get_key_element()
        if key in SETTING_GROUPS:
            check_not_a_list(key, o.value(), lambda k=key: _options(config_loader, k))
        if key == "site" and o.is_sweep_override():
            raise ConfigError(f"'{o.input_line}': a sweep runs on one site; pick one profile (site=<name>) and run a sweep per site. "
                              f"Available: {', '.join(_options(config_loader, 'site'))}.")
        if key in PRESET_GROUPS and o.is_sweep_override():
            unions += preset_union(o, config_loader, parser)
        else:
            kept.append(o)
    overrides = parser.parse_overrides(unions + preset_overrides(params, choices)) + kept
    combos = BasicSweeper.split_arguments(overrides, None)[0]
    setting = functools.cache(lambda key: _checkpoint_fields(config_loader, key))  # one load per model setting, not per job
    return expand_checkpoints(combos, str(choices.get("model")), setting)


def load_option(config_loader: Any, path: str) -> Any:
    """``config_loader.repository.load_config(path)`` (a group option's own file, as Hydra loads it), read
    once per config loader: the expansion and the planner both look at every model setting of a sweep."""
    repo = config_loader.repository
    try:
        loaded = _LOADED.setdefault(repo, {})
    except TypeError:  # a repository that cannot be weakly referenced: not cached
        return repo.load_config(path)
    if path not in loaded:
        loaded[path] = repo.load_config(path)
    return loaded[path]


def _checkpoint_fields(config_loader: Any, key: str) -> Optional[dict[str, Any]]:
    """Model setting ``key`` (resolved, validated) if it has ``checkpoints``, else None."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    res = load_option(config_loader, f"model/{key}")
    if res is None or "checkpoints" not in res.config or res.config.checkpoints is None:
        return None
    from fewshot_eval.settings import model_setting

    try:
        node = OmegaConf.to_container(res.config, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"model/{key}.yaml: cannot resolve its checkpoints: {e}") from None
    return model_setting(node, key)


def preset_union(override: Override, config_loader: Any, parser: OverridesParser) -> list[str]:
    """``models=a,b`` -> one override per swept key with the union of the presets' values, in order
    of first appearance, each once. Each preset value is expanded by Hydra's parser (``glob(*)``,
    ``range(...)``, ``a,b``)."""
    group = override.get_key_element()
    if group == "experiment":
        raise ConfigError(
            f"'{override.input_line}': select one experiment per run -- an experiment sets run params "
            f"(output_dir, num_trials, ...) as well as its sweep, so two cannot be combined. Run them one "
            f"after the other, or combine model/task presets (models=a,b tasks=c,d)."
        )
    names = list(dict.fromkeys(override.sweep_string_iterator()))
    values: dict[str, list[str]] = {}
    keys_of: dict[str, tuple[str, ...]] = {}
    for name in names:
        params = _preset_params(group, name, override.input_line, config_loader)
        keys_of[name] = tuple(params)
        for o in parser.parse_overrides(preset_overrides(params, {group: name})):
            vals = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            acc = values.setdefault(o.get_key_element(), [])
            acc += [v for v in vals if v not in acc]
    if len({tuple(sorted(k)) for k in keys_of.values()}) > 1:
        detail = "; ".join(f"{n} sets {', '.join(k) or 'nothing'}" for n, k in keys_of.items())
        raise ConfigError(
            f"'{override.input_line}': these {group} presets sweep different keys ({detail}); their union "
            f"is not one grid. Combine presets that sweep the same keys, or list the values (e.g. model=a,b,c)."
        )
    return [f"{key}={','.join(vals)}" for key, vals in values.items()]


def _preset_params(group: str, name: str, where: str, config_loader: Any) -> Mapping[str, Any]:
    """A preset file's ``hydra.sweeper.params``; a preset that does more than set a sweep cannot be combined."""
    from omegaconf import OmegaConf

    res = config_loader.repository.load_config(f"{group}/{name}")
    if res is None:
        raise ConfigError(
            f"'{where}': unknown {group} preset '{name}'. Available: {', '.join(_options(config_loader, group)) or '(none)'}."
        )
    cfg = OmegaConf.to_container(res.config, resolve=False) or {}
    params = (((cfg.get("hydra") or {}).get("sweeper") or {}).get("params")) or {}
    rest = sorted(k for k in cfg if k != "hydra") + sorted(f"hydra.{k}" for k in (cfg.get("hydra") or {}) if k != "sweeper")
    if rest:
        raise ConfigError(
            f"'{where}': {group} preset '{name}' sets more than a sweep ({', '.join(rest)}), so it cannot be "
            f"combined with other presets; select it on its own ({group}={name})."
        )
    return params


def check_not_a_list(key: str, value: Any, available: Any) -> None:
    """``model=[]`` / ``model=[a,b]`` select no or several configs at once: a one-line error.
    ``available``: a callable that returns the option names (called only for the message)."""
    if not isinstance(value, list):
        return
    if not value:
        raise ConfigError(
            f"'{key}=[]' selects no {key}: pick at least one, e.g. {key}=a or {key}=a,b with -m. "
            f"Available: {', '.join(available()) or '(none)'}."
        )
    names = ",".join(map(str, value))
    fix = f"select it with {key}={names}" if len(value) == 1 else f"to run each write {key}={names} with -m"
    raise ConfigError(f"'{key}=[{names}]' is a list: {fix}.")


def _options(config_loader: Any, group: str) -> list[str]:
    return sorted(o for o in config_loader.get_group_options(group) if not o.startswith("_"))


def group_list_error(arguments: Iterable[str], available: Any) -> Optional[str]:
    """For the command line before Hydra runs: the message for a ``model=[...]``/``task=[...]``
    argument, else None. ``available(group)`` lists a group's options."""
    for a in arguments:
        if a.split("=", 1)[0].lstrip("+~") not in SETTING_GROUPS or "[" not in a:
            continue
        try:
            o = OverridesParser.create().parse_override(a)
        except Exception:  # Hydra reports unparsable overrides itself
            continue
        try:
            check_not_a_list(o.get_key_element(), o.value(), lambda: available(o.get_key_element()))  # noqa: B023 (called here)
        except ConfigError as e:
            return str(e)
    return None


# ---- checkpoint sweeps --------------------------------------------------------------------------
# A model setting with ``checkpoints:`` stands for one setting per checkpoint of a training run,
# named ``<key>__step<N>``. Planning lists the checkpoints (a directory on disk, or hub revisions)
# and gives each job of that model a ``checkpoint=<N>`` override; ``resolve_unit`` (planner and
# job alike) turns the setting and that step into the checkpoint's own setting. A checkpoint saved
# after the last sweep is one more job on the next sweep; the others are complete and skipped.

STEP_SEP = "__step"
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def checkpoint_steps(model_key: str, model: Mapping[str, Any]) -> dict[int, tuple[Optional[str], Optional[str]]]:
    """step -> (weights, revision) of every checkpoint of a checkpoint-sweep model setting, by step.

    ``dir``: the sub-dirs matching ``pattern`` (default ``checkpoint-*``) that hold a ``config.json``
    (a HuggingFace checkpoint), the step being the last number of the name; ``revisions``: hub
    revisions of ``weights`` (``step1000``), the step being the last number of the revision."""
    ck = model.get("checkpoints") or {}
    where = f"model '{model_key}' key 'checkpoints'"
    _check_predictor_takes_checkpoints(model, where)
    found: dict[int, tuple[Optional[str], Optional[str]]] = {}
    names: dict[int, str] = {}
    if ck.get("dir"):
        root = Path(str(ck["dir"])).expanduser()
        if not root.is_dir():
            raise ConfigError(f"{where}: checkpoint dir {root} does not exist. Point checkpoints.dir at the training run's output dir.")
        pattern = str(ck.get("pattern") or "checkpoint-*")
        entries = [(p.name, str(p), None) for p in sorted(root.glob(pattern)) if p.is_dir() and (p / "config.json").is_file()]
    else:
        entries = [(str(r), str(model["weights"]), str(r)) for r in ck.get("revisions") or []]
    for name, weights, revision in entries:
        m = _LAST_NUMBER.search(name)
        if m is None:
            raise ConfigError(f"{where}: checkpoint '{name}' has no step number in its name (expected e.g. checkpoint-500 or step1000).")
        step = int(m.group(1))
        if step in found:
            raise ConfigError(f"{where}: checkpoints '{names[step]}' and '{name}' have the same step {step}; keep one (or narrow checkpoints.pattern).")
        found[step], names[step] = (weights, revision), name
    return dict(sorted(found.items()))


def _check_predictor_takes_checkpoints(model: Mapping[str, Any], where: str) -> None:
    """A checkpoint is a HuggingFace checkpoint (dir or hub revision): the setting's predictor must load one."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_capability, predictors_with

    if not predictor_capability(model.get("predictor"), "loads_hf_weights", config_dirs()):
        raise ConfigError(f"{where}: checkpoints need a predictor that loads HuggingFace weights "
                          f"({', '.join(predictors_with('loads_hf_weights'))}), got predictor '{model.get('predictor')}'.")


def checkpoint_setting(model_key: str, model: Mapping[str, Any], step: Any) -> tuple[str, dict[str, Any]]:
    """(``<key>__step<N>``, the setting of checkpoint ``step``) of a checkpoint-sweep model setting."""
    steps = checkpoint_steps(model_key, model)
    try:
        n = int(step)
    except (TypeError, ValueError):
        n = None
    if n is None or n not in steps:
        shown = ", ".join(map(str, steps)) or "none found"
        raise ConfigError(f"checkpoint={step}: model '{model_key}' has no checkpoint with that step. Steps: {shown}.")
    weights, revision = steps[n]
    out = dict(model)
    out.update(weights=weights, revision=revision if revision is not None else model.get("revision"),
               name=f"{model['name']}{STEP_SEP}{n}", checkpoints=None)
    return f"{model_key}{STEP_SEP}{n}", out


def expand_checkpoints(combos: Sequence[Sequence[str]], default_model: str, setting: Any) -> list[list[str]]:
    """Each combination of a checkpoint-sweep model becomes one per checkpoint (``checkpoint=<N>``
    appended), unless it names a step already (``checkpoint=null`` names none); other models drop a ``checkpoint=``
    they do not use. ``setting(key)``: the validated model setting of ``key`` (None when it cannot be loaded alone)."""
    out: list[list[str]] = []
    steps_of: dict[str, list[int]] = {}
    # override -> (None: not a checkpoint=, else whether it names a step; the model it selects): each string read once
    kinds: dict[str, tuple[Optional[bool], Optional[str]]] = {}
    for combo in combos:
        key, has_checkpoint = default_model, False
        for o in combo:
            kind = kinds.get(o)
            if kind is None:
                k, _, v = o.partition("=")
                k = k.lstrip("+~")
                kind = kinds[o] = (_value(o, v) is not None if k == "checkpoint" else None, str(_value(o, v)) if k == "model" else None)
            has_checkpoint = has_checkpoint or bool(kind[0])
            if kind[1] is not None:
                key = kind[1]
        model = setting(key)
        if has_checkpoint and model and model.get("checkpoints"):
            out.append(list(combo))
            continue
        combo = [o for o in combo if kinds[o][0] is None]
        if not model or not model.get("checkpoints"):
            out.append(combo)
            continue
        if key not in steps_of:
            steps_of[key] = list(checkpoint_steps(key, model))
            if not steps_of[key]:
                ck = model["checkpoints"]
                raise ConfigError(
                    f"model '{key}': no checkpoints found ({ck.get('dir')}/{ck.get('pattern') or 'checkpoint-*'} holds no dir with a "
                    f"config.json)." if ck.get("dir") else f"model '{key}': checkpoints.revisions is empty."
                )
        out += [[*combo, f"checkpoint={n}"] for n in steps_of[key]]
    return out


def _value(override: str, raw: str) -> Any:
    """The value of ``override`` (``raw``: the text after its ``=``) as Hydra reads it: ``model='a'`` selects
    ``a``, ``checkpoint=null`` names no step."""
    if raw.isidentifier() and raw.lower() not in ("null", "true", "false", "nan", "inf"):
        return raw  # a plain name: nothing for the grammar to unquote, unescape or type
    return OverridesParser.create().parse_override(override).value()

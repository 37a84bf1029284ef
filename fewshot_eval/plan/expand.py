"""Expand sweep presets and command-line overrides into the cartesian product of jobs.

    model=a,b task=x nshot=0,32   ->   4 jobs
    models=<group>                ->   the group's ``hydra.sweeper.params.model`` string, e.g. "a,b"

Command-line values override a preset's (``models=all model=a`` runs only ``a``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from fewshot_eval.config import ConfigError

PRESET_GROUPS = ("models", "tasks", "experiment")


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
    """All job override lists, presets first so that command-line values replace theirs."""
    parser = OverridesParser.create(config_loader=config_loader)
    overrides = parser.parse_overrides(preset_overrides(params, choices) + list(arguments))
    for o in overrides:
        if o.get_key_element() in PRESET_GROUPS and o.is_sweep_override():
            raise ConfigError(
                f"'{o.input_line}': select one {o.get_key_element()} preset per run; to combine presets, "
                f"list their members instead (e.g. model=a,b,c) or add a new preset file."
            )
    return BasicSweeper.split_arguments(overrides, None)[0]

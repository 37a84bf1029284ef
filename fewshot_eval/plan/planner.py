"""Turn a sweep's override combinations into planned jobs with a status each -- before launching.

Composing a full Hydra config per job costs 55-80 ms, so the planner composes nothing per job:
each distinct model and task option is loaded once from the config repository, each distinct
override string is parsed once, and a job is then a cheap dict merge plus a digest. Options
whose file has its own defaults list, or sweeps over other groups or dotted keys, fall back to
one full composition per distinct combination.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from hydra._internal.config_loader_impl import get_overrides_dirname
from omegaconf import DictConfig, OmegaConf, open_dict

from fewshot_eval.config import ConfigError, conf_dir, override_keys, run_values
from fewshot_eval.plan.unit import JobUnit, resolve_unit
from fewshot_eval.settings import model_setting, task_setting
from fewshot_eval.store import layout
from fewshot_eval.store.status import COMPLETE, PARTIAL, STALE, result_status

RUN, SKIP_COMPLETE, SKIP_PENDING, SKIP_STALE, NOT_APPLICABLE = "run", "skip: complete", "skip: pending", "stale", "n/a"
CHEAP_KEYS = ("nshot", "trial")

# (result_dir, trials, override_completed) -> (skip as pending?, note) for a result dir with a
# submitted.json: the note says why it is pending, or why it is submitted again ("resubmit: ...").
PendingCheck = Callable[[Path, list[int], bool], tuple[bool, str]]


@dataclass
class PlannedJob:
    overrides: list[str]
    unit: JobUnit
    status: str
    detail: str = ""

    @property
    def runs(self) -> bool:
        return self.status == RUN


class Planner:
    """Plans jobs against a composed base config (the sweeper's) and its config loader."""

    def __init__(self, base: DictConfig, config_loader: Any, pending_check: PendingCheck | None = None) -> None:
        self.base = base
        self.loader = config_loader
        self.pending_check = pending_check
        hc = base.hydra
        self.cwd = Path(hc.runtime.cwd or os.getcwd())
        self.search = [Path(s.path) for s in hc.runtime.config_sources if s.schema == "file"]
        if conf_dir() not in self.search:
            self.search.append(conf_dir())
        self.choices = dict(hc.runtime.choices)
        self.run = run_values(base)
        base_keys = [o.split("=", 1)[0].lstrip("+~") for o in hc.overrides.task]
        exp_touches = self._experiment_touches_settings()
        self.force_slow = exp_touches or any(k.startswith(("model.", "task.")) for k in base_keys)
        self._parsed: dict[str, tuple[str, Any]] = {}
        self._ctx: Optional[DictConfig] = None
        self._checked: set[str] = set()
        self._nodes: dict[tuple[str, str], DictConfig] = {}
        self._settings: dict[tuple[str, str], Optional[dict[str, Any]]] = {}
        self._composed: dict[tuple[str, ...], tuple[dict, dict, dict, dict[str, str]]] = {}
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self._parser = OverridesParser.create(config_loader=config_loader)

    # ---- loading settings -------------------------------------------------------------
    def _experiment_touches_settings(self) -> bool:
        name = self.choices.get("experiment")
        if not name:
            return False
        res = self.loader.repository.load_config(f"experiment/{name}")
        return res is not None and any(k in res.config for k in ("model", "task"))

    def _options(self, group: str) -> list[str]:
        return sorted(o for o in self.loader.get_group_options(group) if not o.startswith("_"))

    def setting(self, group: str, key: str) -> Optional[dict[str, Any]]:
        """A validated model/task setting loaded straight from its file, or None if it needs full composition."""
        if (group, key) in self._settings:
            return self._settings[(group, key)]
        res = self.loader.repository.load_config(f"{group}/{key}")
        if res is None:
            raise ConfigError(
                f"Unknown {group} '{key}'. Available: {', '.join(self._options(group))}. "
                f"Add conf/{group}/{key}.yaml (or to your --config-dir) or pick one of these."
            )
        value: Optional[dict[str, Any]] = None
        if "defaults" not in res.config and res.header.get("package") in (None, "", group, f"_group_"):
            if self._ctx is None:  # resolve a file's interpolations against the run values
                self._ctx = OmegaConf.create(dict(self.run))
            with open_dict(self._ctx):
                self._ctx[group] = res.config
            node = OmegaConf.to_container(self._ctx[group], resolve=True)
            value = model_setting(node, key) if group == "model" else task_setting(node, key)
        self._settings[(group, key)] = value
        return value

    def _parse(self, s: str) -> tuple[str, Any]:
        if s not in self._parsed:
            o = self._parser.parse_override(s)
            self._parsed[s] = (o.get_key_element(), o.value())
        return self._parsed[s]

    def _compose(self, overrides: Sequence[str]) -> tuple[dict, dict, dict, dict[str, str]]:
        """Full composition (slow path), cached per combination minus cheap keys."""
        key = tuple(o for o in overrides if o.split("=", 1)[0] not in CHEAP_KEYS)
        if key not in self._composed:
            cfg = self.loader.load_sweep_config(self.base, list(key))
            choices = dict(cfg.hydra.runtime.choices)
            run = run_values(cfg)
            model = model_setting(cfg.model, choices["model"])
            task = task_setting(cfg.task, choices["task"])
            self._composed[key] = (model, task, run, choices)
        return self._composed[key]

    def _setting_node(self, group: str, key: str) -> DictConfig:
        """What composition puts at ``cfg.<group>``: the schema (config.yaml's ``*_schema@<group>``) merged with the file."""
        if (group, key) not in self._nodes:
            from fewshot_eval.settings import ModelSetting, TaskSetting

            raw = self.loader.repository.load_config(f"{group}/{key}").config
            schema = OmegaConf.structured(ModelSetting if group == "model" else TaskSetting)
            self._nodes[(group, key)] = OmegaConf.merge(schema, raw)
        return self._nodes[(group, key)]

    def job_config(self, overrides: Sequence[str]) -> DictConfig:
        """The composed config of one job, equal to Hydra's ``load_sweep_config`` but cheap: one full
        composition per distinct set of 'other' overrides, then model/task nodes and top-level values
        are swapped in on a copy."""
        import copy

        from hydra.core.override_parser.overrides_parser import OverridesParser

        swaps: dict[str, str] = {}
        values: dict[str, Any] = {}
        other: list[str] = []
        for s in overrides:
            k, v = self._parse(s)
            if k in ("model", "task") and not self.force_slow and self.setting(k, v) is not None:
                swaps[k] = v
            elif k in self.run and "." not in k and k not in self.choices:
                values[k] = v
            else:
                other.append(s)
        key = ("__job__",) + tuple(other)
        if key not in self._composed:
            self._composed[key] = self.loader.load_sweep_config(self.base, other)  # type: ignore[assignment]
        cfg = copy.deepcopy(self._composed[key])
        with open_dict(cfg):
            for group, option in swaps.items():
                cfg[group] = copy.deepcopy(self._setting_node(group, option))
                cfg.hydra.runtime.choices[group] = option
            for k, v in values.items():
                cfg[k] = v
            cfg.hydra.overrides.task = list(overrides)
            jc = cfg.hydra.job.config.override_dirname
            parsed = OverridesParser.create().parse_overrides(list(overrides))
            cfg.hydra.job.override_dirname = get_overrides_dirname(parsed, list(jc.exclude_keys), jc.item_sep, jc.kv_sep)
        return cfg

    # ---- planning -----------------------------------------------------------------------
    def resolve(self, overrides: Sequence[str]) -> JobUnit:
        """The JobUnit of one combination of overrides."""
        choices = {"model": self.choices["model"], "task": self.choices["task"]}
        values: dict[str, Any] = {}
        slow = self.force_slow
        for s in overrides:
            k, v = self._parse(s)
            if k in ("model", "task"):
                choices[k] = v
            elif k in self.choices:  # another config group: fine only if it is the base's choice
                slow = slow or v != self.choices[k]
            elif k.startswith("hydra.") or k.startswith("hydra/"):
                continue
            elif "." in k or k not in self.run:
                slow = True
            else:
                values[k] = v
        model = None if slow else self.setting("model", choices["model"])
        task = None if slow else self.setting("task", choices["task"])
        if model is None or task is None:
            model, task, run, composed_choices = self._compose(overrides)
            choices = {"model": composed_choices["model"], "task": composed_choices["task"]}
            run = dict(run)
            for s in overrides:
                k, v = self._parse(s)
                if k in CHEAP_KEYS:
                    run[k] = v
        else:
            run = dict(self.run)
            run.update(values)
        return resolve_unit(
            choices["model"], choices["task"], None, None, run, override_keys(list(overrides)), self.cwd, self.search,
            model=model, task=task,
        )

    def plan(self, combos: Sequence[Sequence[str]]) -> list[PlannedJob]:
        """One PlannedJob per distinct result (split_trials: per trial), with its status."""
        jobs: list[PlannedJob] = []
        seen: set[tuple[Path, tuple[int, ...]]] = set()
        override = bool(self.run.get("override_completed"))
        for combo in combos:
            unit = self.resolve(combo)
            self._check_eval_params(unit)
            if not unit.applicable:
                jobs.append(PlannedJob(list(combo), unit, NOT_APPLICABLE, unit.reason))
                continue
            split = bool(self.run.get("split_trials")) and len(unit.all_trials) > 1
            parts = [[t] for t in unit.all_trials] if split else [unit.all_trials]
            for trials in parts:
                key = (unit.result_dir, tuple(trials))
                if key in seen:
                    continue
                seen.add(key)
                u = unit if not split else _with_trials(unit, trials)
                extra = [f"trial={trials[0]}"] if split else []
                status, detail = self._status(u, split, override)
                jobs.append(PlannedJob(list(combo) + extra, u, status, detail))
        return jobs

    def _check_eval_params(self, unit: JobUnit) -> None:
        """Catch bad templates, languages, splits, scoring modes and calibrators before anything launches
        (once per distinct task setting and params; reads task definitions, not data)."""
        import json

        key = json.dumps([unit.task_key, unit.params], sort_keys=True, default=str)
        if key in self._checked:
            return
        from fewshot_eval.evaluate.calibration import check_calibrator
        from fewshot_eval.evaluate.scoring import check_mode
        from fewshot_eval.evaluate.tasks import load_task_def, select_languages, select_templates, split_names

        check_mode(unit.params.get("scoring"))
        check_calibrator(unit.params.get("calibrator"))
        for name in unit.task["tasks"]:
            td = load_task_def(name, self.search)
            select_templates(td, unit.params)
            select_languages(td, unit.params)
            split_names(td, unit.params)
        self._checked.add(key)

    def _status(self, unit: JobUnit, split: bool, override: bool) -> tuple[str, str]:
        note = ""
        if self.pending_check is not None and (unit.result_dir / layout.SUBMITTED).exists():
            pending, note = self.pending_check(unit.result_dir, unit.trials, override)
            if pending:
                return SKIP_PENDING, note
        status, detail = self._disk_status(unit, split, override)
        if status == RUN and note:  # e.g. "resubmit: SLURM job 12_3 was CANCELLED"
            detail = f"{note}; {detail}" if detail else note
        return status, detail

    def _disk_status(self, unit: JobUnit, split: bool, override: bool) -> tuple[str, str]:
        st = result_status(unit.result_dir, unit.fingerprint, unit.trials if split else unit.all_trials)
        if st.state == STALE:
            detail = "task data or definitions changed" if split else st.detail
            return (RUN, "override: stale result moved aside") if override else (SKIP_STALE, detail)
        if st.state == COMPLETE or (split and set(unit.trials) <= set(st.done_trials) and not st.problems):
            return (RUN, "override_completed") if override else (SKIP_COMPLETE, "")
        if st.state == PARTIAL and not split:
            resume = f"resume: trials {st.done_trials} already done"
            return RUN, f"{st.detail}; {resume}" if st.detail else resume
        return RUN, st.detail  # e.g. "incomplete: trial1/copa_demo.default.predictions.jsonl missing"


def _with_trials(unit: JobUnit, trials: list[int]) -> JobUnit:
    from dataclasses import replace

    return replace(unit, trials=list(trials))

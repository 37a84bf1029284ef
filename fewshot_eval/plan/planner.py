"""Turn a sweep's override combinations into planned jobs with a status each -- before launching.

Composing a full Hydra config per job costs 55-80 ms, so the planner composes nothing per job:
each distinct model and task option is loaded once from the config repository, each distinct
override string is parsed once, and a job is then a cheap dict merge plus a digest. Options
whose file has its own defaults list, or sweeps over other groups or dotted keys, fall back to
one full composition per distinct combination.
"""

from __future__ import annotations

import gc
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from hydra._internal.config_loader_impl import get_overrides_dirname
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from fewshot_eval.config import INTERNAL_OVERRIDES, ConfigError, closest, conf_dir, override_keys, run_values
from fewshot_eval.plan.checks import check_plan, check_same_result
from fewshot_eval.plan.estimates import AUTO, Estimate, History
from fewshot_eval.plan.expand import load_option
from fewshot_eval.plan.unit import JobUnit, UnitBase, output_root, resolve_unit, unit_base
from fewshot_eval.settings import model_setting, task_setting
from fewshot_eval.store import layout
from fewshot_eval.store.dir_listing import DirListing
from fewshot_eval.store.failures import failure_streak, record_failure
from fewshot_eval.store.leftovers import tidy_all
from fewshot_eval.store.markers import INTENT
from fewshot_eval.store.status import COMPLETE, PARTIAL, STALE, result_status

_UNSET = object()
RUN, SKIP_COMPLETE, SKIP_PENDING, SKIP_STALE, NOT_APPLICABLE = "run", "skip: complete", "skip: pending", "stale", "n/a"
ERROR, FAILED = "error", "failed"  # error: would die at start (fix the config); failed: failed max_failures times
CHEAP_KEYS = ("nshot", "trial")

# (result_dir, trials, override_completed, local_launcher) -> fewshot_eval.launch.slurm.pending_check.Pending
# (.pending, .note, .failure) for a result dir with a recorded SLURM submission. The sweeps pass a
# SchedulerView, which also has prepare(root, result_dirs) (read the records, ask SLURM once for the
# whole plan), has_submission(result_dir) and commit() (write what the plan saw: a sweep that is not a dry run).
PendingCheck = Callable[..., Any]


@dataclass
class PlannedJob:
    overrides: list[str]
    unit: JobUnit
    status: str
    detail: str = ""
    estimate: Optional[Estimate] = None  # how long it will run (Planner.estimate); None: not asked
    time_limit_min: Optional[int] = None  # timeout_min=auto: its SLURM time limit, set from the estimates

    @property
    def runs(self) -> bool:
        return self.status == RUN

    @property
    def estimate_s(self) -> Optional[float]:
        return self.estimate.seconds if self.estimate is not None else None


class Planner:
    """Plans jobs against a composed base config (the sweeper's) and its config loader."""

    def __init__(self, base: DictConfig, config_loader: Any, pending_check: PendingCheck | None = None, local_launcher: bool = True) -> None:
        self.base = base
        self.loader = config_loader
        self.pending_check = pending_check
        self.local_launcher = local_launcher  # SLURM markers it cannot resolve are ignored, not pending
        self.site: Any = None  # the sweep's site profile, set by whoever plans (fewshot_eval.launch.slurm.site_profiles.Site)
        hc = base.hydra
        self.cwd = Path(hc.runtime.cwd or os.getcwd())
        self.search = [Path(s.path) for s in hc.runtime.config_sources if s.schema == "file"]
        if conf_dir() not in self.search:
            self.search.append(conf_dir())
        self.choices = dict(hc.runtime.choices)
        self.run = run_values(base)
        base_keys = [o.split("=", 1)[0].lstrip("+~") for o in hc.overrides.task]
        exp_touches = self._experiment_touches_settings()
        # a base value that interpolates (an experiment's ``description: "${model.name}: "``) is each job's own, as its
        # config resolves it: planned by full composition (_compose; rare: none of conf/ does)
        raw = OmegaConf.to_container(base, resolve=False)
        base_interpolates = any(_interpolates(raw.get(k)) for k in self.run)
        self.force_slow = exp_touches or base_interpolates or any(k.startswith(("model.", "task.")) for k in base_keys)
        self._parsed: dict[str, tuple[str, Any]] = {}
        self._checked: dict[str, Optional[str]] = {}
        self.warnings: dict[str, None] = {}  # what the planning checks allow but say once (empty data ...), in order
        self._valid: set[tuple[str, ...]] = set()  # settings whose values passed the schema (overrides less nshot/trial)
        self._checkpoints_used = False  # a model setting with 'checkpoints' was planned (checkpoint= picks its steps)
        self._notes: dict[tuple, Optional[str]] = {}
        self._offline: dict[str, bool] = {}
        self._offline_of: dict[int, tuple[tuple[dict[str, Any], ...], bool]] = {}  # id(params) -> (model, params, task), value
        self._note_of: dict[int, tuple[dict[str, Any], dict[str, Any], Optional[str]]] = {}  # id(params) -> model, params, note
        self._nodes: dict[tuple[str, str], DictConfig] = {}
        self._settings: dict[tuple[str, str], Optional[dict[str, Any]]] = {}
        self._composed: dict[tuple[str, ...], tuple[dict, dict, dict, dict[str, str]]] = {}
        self._per_job: set[tuple[str, ...]] = set()  # settings (overrides less nshot/trial) whose composition interpolates
        self._live: dict[tuple[str, ...], tuple[DictConfig, dict[str, str], set[str]]] = {}  # job_config(reuse=True)
        self._overrides: dict[str, Any] = {}
        self._time_checks: dict[Any, Any] = {}  # the launcher options; time limit problems per value
        self._model_json: dict[int, tuple[dict[str, Any], str]] = {}
        self._params_json: dict[int, tuple[dict[str, Any], str]] = {}
        self._check_of: dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any], dict[str, Any], Optional[str]]] = {}
        self._bases: dict[tuple[str, ...], UnitBase] = {}  # a combination's overrides but nshot/trial -> what their jobs share
        self._memo: dict[Any, Any] = {}  # what the settings of a plan share (unit_base: per model, per tasks)
        # what the plan saw and a sweep that is not a dry run writes it (commit): SLURM failures, 0.1.0 files maps; never a dry run's
        self.writes: list[Callable[[], None]] = []
        self._tidy: dict[Path, dict[str, Any]] = {}  # complete results (-> identity) whose leftovers a write removes (store/leftovers.py)
        self._history: Optional[History] = None
        self._listing: Optional[DirListing] = None  # while planning
        self._seen: Optional[DirListing] = None  # the last plan's listing: where the estimates look for earlier results
        self.time_limits: dict[str, tuple[int, str]] = {}  # timeout_min=auto: model -> (minutes, why)
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self._parser = OverridesParser.create(config_loader=config_loader)
        from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import look_again

        look_again()  # lm-eval task YAMLs edited since the last plan in this process are seen

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
        res = load_option(self.loader, f"{group}/{key}")
        if res is None:
            raise ConfigError(
                f"Unknown {group} '{key}'{closest(key, self._options(group))}. Available: {', '.join(self._options(group))}. "
                f"Add conf/{group}/{key}.yaml (or to your --config-dir) or pick one of these."
            )
        value: Optional[dict[str, Any]] = None
        if "defaults" not in res.config and res.header.get("package") in (None, "", group, "_group_"):
            node = OmegaConf.to_container(res.config, resolve=False)
            if _interpolates(node):  # the file's interpolations, if they read only the file itself (and resolvers: oc.env ...)
                try:
                    node = OmegaConf.to_container(OmegaConf.create({group: res.config})[group], resolve=True)
                except OmegaConfBaseException:  # other values of the job's config (${model.name}, ${nshot}): composed per job
                    node = None
            if node is not None:
                value = model_setting(node, key) if group == "model" else task_setting(node, key)
        self._settings[(group, key)] = value
        return value

    def _parse(self, s: str) -> tuple[str, Any]:
        if s not in self._parsed:
            o = self._parser.parse_override(s)
            self._parsed[s] = (o.get_key_element(), o.value())
            self._overrides.setdefault(s, o)  # job_config wants it too
        return self._parsed[s]

    def _compose(self, overrides: Sequence[str]) -> tuple[tuple[dict, dict, dict, dict[str, str]], bool]:
        """Full composition (slow path), cached per combination minus cheap keys -- with them where the composed
        config interpolates (a setting's ``${nshot}``, an experiment's ``${model.name}``): (model, task, run, choices),
        and whether it does (each job then resolves its own)."""
        setting = tuple(o for o in overrides if o.split("=", 1)[0] not in CHEAP_KEYS)
        key = tuple(overrides) if setting in self._per_job else setting
        if key not in self._composed:
            cfg = self.loader.load_sweep_config(self.base, list(key))
            raw = OmegaConf.to_container(cfg, resolve=False)
            if setting not in self._per_job and _interpolates({k: v for k, v in raw.items() if k not in ("hydra", "site")}):
                self._per_job.add(setting)
                if key != tuple(overrides):
                    key = tuple(overrides)
                    cfg = self.loader.load_sweep_config(self.base, list(key))
            choices = dict(cfg.hydra.runtime.choices)
            run = run_values(cfg)
            model = model_setting(cfg.model, choices["model"])
            task = task_setting(cfg.task, choices["task"])
            self._composed[key] = (model, task, run, choices)
        return self._composed[key], setting in self._per_job

    def _setting_node(self, group: str, key: str) -> DictConfig:
        """What composition puts at ``cfg.<group>``: the schema (config.yaml's ``*_schema@<group>``) merged with the file."""
        if (group, key) not in self._nodes:
            from fewshot_eval.settings import ModelSetting, TaskSetting

            raw = self.loader.repository.load_config(f"{group}/{key}").config
            schema = OmegaConf.structured(ModelSetting if group == "model" else TaskSetting)
            self._nodes[(group, key)] = OmegaConf.merge(schema, raw)
        return self._nodes[(group, key)]

    def job_config(self, overrides: Sequence[str], reuse: bool = False) -> DictConfig:
        """The composed config of one job, equal to Hydra's ``load_sweep_config`` but cheap: one full
        composition per distinct set of 'other' overrides, then model/task nodes and top-level values
        are swapped in on a copy. ``reuse``: the same object for every job of that composition, set again
        in place (no copy of the whole config per job): for a launcher that is done with a job's config
        before it asks for the next one's (``run_job``, Hydra's or launch/inprocess_job's, copies what it keeps)."""
        import copy

        swaps: dict[str, str] = {}
        values: dict[str, Any] = {}
        other: list[str] = []
        kept: list[str] = []  # the overrides for override_dirname (planned_id is excluded from it anyway)
        for s in overrides:
            m = _PLANNED_ID.fullmatch(s)
            if m is not None:  # the sweep's own override, one per result: read here, not parsed and kept per string
                values["planned_id"] = m.group(1)
                continue
            kept.append(s)
            if s not in self._parsed:  # an override planning did not see: parsed once, for both uses
                o = self._override(s)
                self._parsed[s] = (o.get_key_element(), o.value())
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
        base: DictConfig = self._composed[key]  # type: ignore[assignment]
        live = self._live.get(key) if reuse else None
        if reuse and live is None:
            live = self._live[key] = (copy.deepcopy(base), {}, set())
        cfg = live[0] if live is not None else copy.deepcopy(base)
        if live is not None:  # Hydra's run_job made the last job's hydra node read-only (HydraConfig.set_config)
            OmegaConf.set_readonly(cfg.hydra, base.hydra._get_node_flag("readonly"))
        with open_dict(cfg):
            if live is not None:  # what the previous job set and this one does not: back to the composition's
                for group in live[1].keys() - swaps.keys():
                    cfg[group] = copy.deepcopy(base._get_node(group))
                    cfg.hydra.runtime.choices[group] = base.hydra.runtime.choices[group]
                for k in live[2] - values.keys():
                    cfg[k] = copy.deepcopy(base._get_node(k))
                live[2].clear(), live[2].update(values)
            for group, option in swaps.items():
                if live is not None and live[1].get(group) == option:
                    continue  # the previous job's setting node, untouched (run_job hands the job a copy)
                cfg[group] = copy.deepcopy(self._setting_node(group, option))
                cfg.hydra.runtime.choices[group] = option
            if live is not None:
                live[1].clear(), live[1].update(swaps)
            for k, v in values.items():
                cfg[k] = v
            task, was = cfg.hydra.overrides.task, OmegaConf.to_container(cfg.hydra.overrides.task)  # unresolved strings
            if len(was) == len(overrides):  # a sweep's job differs from the last one in a value or two: set those
                for i, s in enumerate(overrides):
                    if was[i] != s:
                        task[i] = s
            else:
                cfg.hydra.overrides.task = list(overrides)
            jc = cfg.hydra.job.config.override_dirname
            parsed = [self._override(s) for s in kept]
            exclude = list(dict.fromkeys([*jc.exclude_keys, *INTERNAL_OVERRIDES]))  # the sweep's internal overrides
            cfg.hydra.job.override_dirname = get_overrides_dirname(parsed, exclude, jc.item_sep, jc.kv_sep)
        return cfg

    def _override(self, s: str) -> Any:
        """Hydra's parsed Override of an override string (parsed once per string, as ``get_overrides_dirname`` wants it)."""
        if s not in self._overrides:
            self._overrides[s] = self._parser.parse_overrides([s])[0]
        return self._overrides[s]

    # ---- planning -----------------------------------------------------------------------
    def resolve(self, overrides: Sequence[str]) -> JobUnit:
        """The JobUnit of one combination of overrides."""
        rest = []
        nshot = trial = _UNSET
        parsed = self._parsed
        for s in overrides:  # CHEAP_KEYS apart (this runs for every combination of a plan)
            kv = parsed.get(s) or self._parse(s)
            if kv[0] == "nshot":
                nshot = kv[1]
            elif kv[0] == "trial":
                trial = kv[1]
            else:
                rest.append(s)
        base = self._bases.get(tuple(rest))  # a setting resolved before: only nshot and trial are new
        if base is not None:
            return base.unit(self.run["nshot"] if nshot is _UNSET else nshot, self.run.get("trial") if trial is _UNSET else trial)
        choices = {"model": self.choices["model"], "task": self.choices["task"]}
        values: dict[str, Any] = {}
        slow = self.force_slow
        setting: list[str] = []  # the overrides less nshot/trial: the schema checks each distinct setting once
        for s in overrides:
            k, v = self._parse(s)
            if k not in CHEAP_KEYS:
                setting.append(s)
            if k in ("model", "task"):
                choices[k] = v
            elif k in self.choices:  # another config group: fine only if it is the base's choice
                slow = slow or v != self.choices[k]
            elif k.startswith("hydra.") or k.startswith("hydra/"):
                continue
            elif "." in k or k not in self.run or _interpolates(v):  # ${...}, escaped too: resolved as in the job's config
                slow = True
            else:
                values[k] = v
        model = None if slow else self.setting("model", choices["model"])
        task = None if slow else self.setting("task", choices["task"])
        if model is None or task is None:
            (model, task, run, composed_choices), per_job = self._compose(overrides)
            slow = slow or per_job  # not one UnitBase for its nshot values
            choices = {"model": composed_choices["model"], "task": composed_choices["task"]}
            run = dict(run)
            for s in overrides:
                k, v = self._parse(s)
                if k in CHEAP_KEYS:
                    run[k] = v
        else:  # the jobs of one setting differ only in nshot and trial: the rest is resolved once (UnitBase)
            run = dict(self.run)
            run.update(values)
        if model.get("checkpoints"):
            self._checkpoints_used = True
        key = tuple(setting)
        check = key not in self._valid
        if not slow:
            base = self._bases[tuple(rest)] = unit_base(choices["model"], choices["task"], None, None, run, override_keys(list(overrides)),
                                                        self.cwd, self.search, model=model, task=task, check=check, memo=self._memo)
            self._valid.add(key)
            return base.unit(values["nshot"] if "nshot" in values else self.run["nshot"], values["trial"] if "trial" in values else self.run.get("trial"))
        unit = resolve_unit(
            choices["model"], choices["task"], None, None, run, override_keys(list(overrides)), self.cwd, self.search,
            model=model, task=task, check=check,
        )
        self._valid.add(key)
        return unit

    def plan(self, combos: Sequence[Sequence[str]]) -> list[PlannedJob]:
        """One PlannedJob per distinct result (split_trials: per trial), with its status. With the run
        param ``prefetch=true`` (not a dry run), what the jobs to run read from the hub is fetched first
        (:mod:`fewshot_eval.plan.prefetch`) and the sweep planned again."""
        with gc_paused():
            return self._plan_all(combos)

    def _plan_all(self, combos: Sequence[Sequence[str]]) -> list[PlannedJob]:
        from fewshot_eval.plan.prefetch import forget_cache_state

        forget_cache_state()  # what the caches hold is asked once per plan
        jobs = self._plan(combos)
        if self.run.get("prefetch") and not self.run.get("dry_run"):
            from fewshot_eval.plan.prefetch import prefetch

            if prefetch([j for j in jobs if j.status in (RUN, ERROR)], self.search, what="prefetch=true"):
                raise ConfigError("prefetch=true: the hub inputs above could not be fetched; nothing launched. Fix them or run without prefetch=true.")
            forget_cache_state()
            self._checked.clear()
            self._check_of.clear()
            self._notes.clear()
            self._note_of.clear()
            self._offline.clear()
            self._offline_of.clear()
            self._bases.clear()  # weights fingerprints of what was fetched
            self._memo.clear()
            jobs = self._plan(combos)
        if not self.local_launcher and any(j.status == RUN and self._timeout(j.unit) == AUTO for j in jobs):
            self._auto_time_limits(jobs)
        return jobs

    # ---- run times and time limits from earlier results (plan/estimates.py) ------------------
    def estimate(self, jobs: Sequence[PlannedJob]) -> None:
        """Set ``estimate`` of every job that runs, from the wall times of earlier results of its model."""
        from fewshot_eval.plan.unit import output_root

        if self._history is None:
            self._history = History(output_root(self.run, self.cwd), self.search, listing=self._seen)
        wanted: dict[str, dict[tuple[str, int], None]] = {}
        for j in jobs:
            if j.status == RUN:
                wanted.setdefault(j.unit.model_key, {})[(j.unit.task_key, j.unit.nshot)] = None
        memo: dict[tuple[Any, ...], tuple[dict[str, Any], Estimate]] = {}  # the trials of one result, its jobs of one setting: one estimate
        unknown = {m: self._history.estimate_without(m) for m, w in wanted.items() if not self._history.samples(m, w)}  # one per model
        for j in jobs:
            if j.status == RUN and j.estimate is None:
                u = j.unit
                if u.model_key in unknown:
                    j.estimate = unknown[u.model_key]
                    continue
                key = (u.model_key, u.task_key, u.nshot, len(u.trials), id(u.params))
                hit = memo.get(key)
                if hit is None or hit[0] is not u.params:
                    hit = memo[key] = (u.params, self._history.estimate(u, wanted[u.model_key]))
                j.estimate = hit[1]

    def _launcher(self) -> Any:
        if "launcher" not in self._time_checks:  # asked per job: read once
            self._time_checks["launcher"] = self.base.hydra.get("launcher") or {}
        return self._time_checks["launcher"]

    def _timeout(self, unit: JobUnit) -> Any:
        """The job's timeout_min: the SLURM launcher's value, else its model setting's (a number or 'auto')."""
        value = self._launcher().get("timeout_min")
        return value if value is not None else unit.model.get("resources", {}).get("timeout_min")

    def _auto_time_limits(self, jobs: Sequence[PlannedJob]) -> None:
        """``timeout_min=auto``: one time limit per model pool, from the estimate of its longest job (all of
        them together for combine_tasks); the model setting's own timeout_min where a job has none."""
        from fewshot_eval.plan.estimates import FACTOR, FALLBACK_MIN, FLOOR_MIN, auto_limit, fmt_duration
        from fewshot_eval.settings import time_limit_problem

        launcher = self._launcher()
        factor = float(launcher.get("auto_timeout_factor") or FACTOR)
        floor = int(launcher.get("auto_timeout_floor_min") or FLOOR_MIN)
        delay = launcher.get("signal_delay_s", 120)
        auto = [j for j in jobs if j.status == RUN and self._timeout(j.unit) == AUTO]
        self.estimate(auto)
        by_model: dict[str, list[PlannedJob]] = {}
        for j in auto:
            by_model.setdefault(j.unit.model_key, []).append(j)
        for model, js in by_model.items():
            own = js[0].unit.model.get("resources", {}).get("timeout_min")
            fallback = own if isinstance(own, (int, float)) and not isinstance(own, bool) else FALLBACK_MIN
            known = [j.estimate_s for j in js if j.estimate_s is not None]
            combine = bool(js[0].unit.model.get("job", {}).get("combine_tasks"))
            longest = sum(known) if combine else max(known, default=0.0)
            if not known:
                limit, why = int(fallback), f"no earlier results of {model}: its timeout_min {fallback}"
            else:
                limit = auto_limit(longest, factor, floor, delay)
                basis = max((j.estimate for j in js if j.estimate_s is not None), key=lambda e: e.samples)
                why = (f"{'all its jobs' if combine else 'its longest job'} ~{fmt_duration(longest)} x {factor:g} + signal_delay_s, "
                       f"at least {floor} min; from {basis.basis}")
                if len(known) < len(js):
                    limit = max(limit, int(fallback))
                    unknown = len(js) - len(known)
                    why += f"; {unknown} job{'s' if unknown != 1 else ''} without earlier results: at least its timeout_min {fallback}"
            self.time_limits[model] = (limit, why)
            problem = time_limit_problem(limit, delay)
            for j in js:
                j.time_limit_min = limit
                if problem:
                    j.status, j.detail = ERROR, f"timeout_min=auto gave {limit} min: {problem}"

    def _plan(self, combos: Sequence[Sequence[str]]) -> list[PlannedJob]:
        self._listing = self._seen = DirListing()  # this plan's view of the result tree: each dir listed once
        try:
            return self._plan_jobs(combos)
        finally:
            self._listing = None  # later questions (a launcher's re-check under its lock) read the disk

    def _plan_jobs(self, combos: Sequence[Sequence[str]]) -> list[PlannedJob]:
        check_plan(self, combos)
        self.writes = []
        self._tidy = {}
        rows: list[tuple[Sequence[str], JobUnit, Optional[str], Optional[JobUnit], list[str], bool]] = []
        seen: dict[tuple[Path, tuple[int, ...]], list[str]] = {}
        by_dir: dict[Path, Sequence[str]] = {}  # a result dir is written by one setting (num_trials=2,3 would share one)
        override = bool(self.run.get("override_completed"))
        for combo in combos:
            unit = self.resolve(combo)
            if not unit.applicable:
                rows.append((combo, unit, None, None, [], False))
                continue
            first = by_dir.setdefault(unit.result_dir, combo)
            if first is not combo:
                check_same_result(first, combo, unit.result_dir)
            error = self.check(unit)
            split = bool(self.run.get("split_trials")) and len(unit.all_trials) > 1
            parts = [[t] for t in unit.all_trials] if split else [unit.all_trials]
            for trials in parts:
                key = (unit.result_dir, tuple(trials))
                if key in seen:
                    check_same_result(seen[key], combo, unit.result_dir)
                    continue
                seen[key] = list(combo)
                u = unit if not split else _with_trials(unit, trials)
                rows.append((combo, unit, error, u, [f"trial={trials[0]}"] if split else [], split))
        self._check_checkpoint_used(combos)
        prepare = getattr(self.pending_check, "prepare", None)
        if hasattr(self.pending_check, "listing"):
            self.pending_check.listing = self._listing
        if prepare is not None:  # what SLURM says about every recorded submission of the plan: asked once
            prepare(output_root(self.run, self.cwd), [r[1].result_dir for r in rows if r[3] is not None and not r[2]])
        jobs: list[PlannedJob] = []
        for combo, unit, error, u, extra, split in rows:
            if u is None:
                jobs.append(PlannedJob(list(combo), unit, NOT_APPLICABLE, unit.reason))
                continue
            if error:
                status, detail = ERROR, error
            else:
                status, detail = self._status(u, split, override)
            if status == RUN:
                note = self._weights_note(unit)
                detail = f"{detail}; {note}" if detail and note else (note or detail)
                if self._runs_offline(unit):
                    extra = [*extra, "hf_offline=true"]
            if unit.requested_nshot is not None and unit.nshot == 0:
                self._warn(f"task setting '{unit.task_key}': nshot={unit.requested_nshot} but its demonstration split has no rows "
                           f"(besides the evaluated ones): its prompts get no demonstrations, the result of nshot=0.")
            if unit.requested_nshot is not None:
                cap = f"nshot={unit.requested_nshot} > the {unit.nshot} demonstration rows: the same result as nshot={unit.nshot}"
                detail = f"{detail}; {cap}" if detail else cap
            jobs.append(PlannedJob(list(combo) + extra, u, status, detail))
        return jobs

    def _check_checkpoint_used(self, combos: Sequence[Sequence[str]]) -> None:
        """``checkpoint=N`` picks steps of the sweep's checkpoint-sweep models (others ignore it); with none
        in the sweep it would pick nothing and be silently ignored."""
        if self._checkpoints_used:
            return
        asked = self.run.get("checkpoint")
        if asked is None:
            asked = next((self._parse(o)[1] for c in combos[:1] for o in c if self._parse(o)[0] == "checkpoint"), None)
        if asked is not None:
            models = sorted({self._parse(o)[1] for c in combos for o in c if self._parse(o)[0] == "model"} or {self.choices["model"]})
            raise ConfigError(f"checkpoint={asked}: no model of this sweep ({', '.join(map(str, models))}) has 'checkpoints' (a training "
                              f"run's dir or hub revisions), so there is no step to pick. Drop checkpoint=, or pick a model setting "
                              f"with checkpoints:.")

    def _runs_offline(self, unit: JobUnit) -> bool:
        """Every hub input of the job is in the local caches (and its model setting does not opt out):
        it runs with HuggingFace offline mode forced (``hf_offline=true``), once per distinct inputs."""
        if not unit.model.get("offline_when_cached", True):
            return False
        model, params, task = objs = (unit.model, unit.params, unit.task)
        hit = self._offline_of.get(id(params))
        if hit is not None and hit[0][0] is model and hit[0][1] is params and hit[0][2] is task:  # the jobs of one setting share these dicts
            return hit[1]
        p = unit.params
        model_key = _key("model", [unit.model.get("weights"), unit.model.get("revision"), p.get("predictor")])
        tasks_key = _key("tasks", [unit.task["tasks"], [p.get(k) for k in ("languages", "train_languages", "train_set", "eval_set")]])
        from fewshot_eval.plan.prefetch import model_cached, tasks_cached

        if model_key not in self._offline:  # once per model and once per tasks, not per model x task
            self._offline[model_key] = model_cached(unit.model, p, self.search)
        if self._offline[model_key] and tasks_key not in self._offline:
            self._offline[tasks_key] = tasks_cached(unit.task["tasks"], p, self.search)
        value = self._offline[model_key] and self._offline[tasks_key]
        self._offline_of[id(params)] = (objs, value)
        return value

    def _weights_note(self, unit: JobUnit) -> Optional[str]:
        """'hub model, not in the local cache' for a hub id (planning does not download), once per weights."""
        model, params = unit.model, unit.params
        hit = self._note_of.get(id(params))
        if hit is not None and hit[0] is model and hit[1] is params:  # the jobs of one setting share these dicts
            return hit[2]
        from fewshot_eval.evaluate.backends.model_checks import weights_note

        key = ("weights", model.get("weights"), model.get("revision"), params.get("predictor"))
        if key not in self._notes:
            self._notes[key] = weights_note(model, params)
        self._note_of[id(params)] = (model, params, self._notes[key])
        return self._notes[key]

    def check(self, unit: JobUnit) -> Optional[str]:
        """What would make this job die at its start (None: nothing), checked once per distinct task
        setting and params and once per model -- see :mod:`fewshot_eval.evaluate.tasks.task_checks` and
        :mod:`fewshot_eval.evaluate.backends.model_checks`."""
        n = unit.nshot
        nshot_kind = n if unit.params.get("balanced") else (0 if n == 0 else -1 if n < 0 else "k")
        memo = (id(unit.params), id(unit.model), id(unit.task), nshot_kind)  # the jobs of one setting share these dicts
        seen = self._check_of.get(memo)
        if seen is not None and seen[0] is unit.params and seen[1] is unit.model and seen[2] is unit.task:
            return seen[3]
        import json

        from fewshot_eval.evaluate.backends.model_checks import check_model
        from fewshot_eval.evaluate.tasks.task_checks import check_nshot, check_tasks

        def once(key: str, fn: Callable[[], None]) -> Optional[str]:
            if key not in self._checked:
                try:
                    fn()
                    self._checked[key] = None
                except ConfigError as e:
                    self._checked[key] = str(e)
            return self._checked[key]

        tasks = unit.task["tasks"]
        hit = self._params_json.get(id(unit.params))
        if hit is None or hit[0] is not unit.params:  # the jobs of one setting share its params: serialised once
            hit = self._params_json[id(unit.params)] = (unit.params, json.dumps([tasks, unit.params], sort_keys=True, default=str))
        setting = hit[1]
        hit = self._model_json.get(id(unit.model))
        if hit is None or hit[0] is not unit.model:  # the setting's dict is shared by its jobs: serialised once
            hit = self._model_json[id(unit.model)] = (unit.model, json.dumps([unit.model_key, unit.model], sort_keys=True, default=str))
        model = hit[1] + repr([unit.params.get(k) for k in ("dtype", "device", "predictor", "max_length")])  # a key, not JSON
        # check_nshot reads the demonstration split when nshot != 0, whatever its value; only balanced=true
        # (divisibility, rows per class) depends on the value: one check per kind of nshot, not per value
        error = (
            once("tasks" + setting, lambda: check_tasks(tasks, unit.params, self.search, warn=self._warn))
            or once("model" + model, lambda: check_model(unit.model_key, unit.model, unit.params, local=self.local_launcher))
            or once(f"nshot{nshot_kind}" + setting, lambda: check_nshot(tasks, unit.params, unit.nshot, self.search, warn=self._warn))
        )
        self._check_of[memo] = (unit.params, unit.model, unit.task, error)
        return error

    def _warn(self, message: str) -> None:
        self.warnings[message] = None

    def _has_submission(self, result_dir: Path) -> bool:
        has = getattr(self.pending_check, "has_submission", None)
        if has is not None:
            return bool(has(result_dir))
        return (result_dir / layout.SUBMITTED).exists() or (result_dir / INTENT).exists()

    def _status(self, unit: JobUnit, split: bool, override: bool) -> tuple[str, str]:
        note = ""
        failure = None
        if self.pending_check is not None and self._has_submission(unit.result_dir):
            state = self.pending_check(unit.result_dir, unit.trials, override, local_launcher=self.local_launcher)
            if state.pending:
                return SKIP_PENDING, state.note
            note = state.note
            if state.failure:  # counted now, written by a sweep that is not a dry run (commit)
                failure = dict(state.failure)
                f, rdir, digest = failure, unit.result_dir, unit.config_digest
                self.writes.append(lambda: record_failure(rdir, f["error"], digest, job_id=f["job_id"], log=f["log"]))
        status, detail = self._disk_status(unit, split, override, self._listing)
        if status == RUN and not self.local_launcher:
            problem = self._time_limit(unit)
            if problem:
                return ERROR, problem
        if status == RUN:
            failed, why = self._failures(unit, failure)
            if failed:
                return FAILED, why
            if why:
                note = f"{note}; {why}" if note else why
        if status == RUN and note:  # e.g. "resubmit: SLURM job 12_3 was CANCELLED"
            detail = f"{note}; {detail}" if detail else note
        return status, detail

    def _time_limit(self, unit: JobUnit) -> Optional[str]:
        """A SLURM time limit that is not a number of minutes or 'auto', or that leaves the job no work time
        before its USR2 (see settings.time_limit_problem). 'auto' is checked once it is set (_auto_time_limits)."""
        timeout = self._timeout(unit)
        if timeout == AUTO:
            return None
        key = (repr(timeout), unit.model_key)
        if key not in self._time_checks:  # one check per value (and model, named in the message), not per job
            self._time_checks[key] = self._time_problem(timeout, unit.model_key)
        return self._time_checks[key]

    def _time_problem(self, timeout: Any, model_key: str) -> Optional[str]:
        from fewshot_eval.settings import time_limit_problem

        try:
            ok = not isinstance(timeout, bool) and float(timeout) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            where = "hydra.launcher.timeout_min" if self._launcher().get("timeout_min") is not None else f"model/{model_key}.yaml: resources.timeout_min"
            return f"{where} must be a number of minutes or 'auto' (from the wall times of earlier results), got {timeout!r}"
        return time_limit_problem(timeout, self._launcher().get("signal_delay_s", 120))

    def commit(self) -> None:
        """Write what this plan saw (SLURM failures into failure.json, adopted submissions, records of
        ended ones removed, the files maps of whole 0.1.0 results): called by a sweep that is not a dry run, never by a dry run, ``status`` or ``report``."""
        for w in self.writes:
            try:
                w()
            except OSError:  # a tree this user cannot write
                pass
        self.writes = []
        commit = getattr(self.pending_check, "commit", None)
        if commit is not None:
            commit()

    def _failures(self, unit: JobUnit, unrecorded: Optional[dict[str, Any]] = None) -> tuple[bool, str]:
        """(stop relaunching?, note) from the result's failure record (and a failure seen but not yet recorded)."""
        if unrecorded is None and self._listing is not None and not self._listing.has(unit.result_dir, layout.FAILURE):
            return False, ""  # nothing recorded (and the config's digest not computed)
        n, last = failure_streak(unit.result_dir, unit.config_digest, unrecorded)
        if not n or last is None:
            return False, ""
        where = last.get("log") or last.get("traceback") or unit.result_dir / layout.FAILURE
        limit = int(self.run.get("max_failures") or 0)
        if limit and n >= limit and not self.run.get("retry_failed"):
            return True, f"failed {n}× ({last['error']}); not relaunched: fix it, change the config or add retry_failed=true (log: {where})"
        return False, f"retry: failed {n}× ({last['error']}) (log: {where})"

    def disk_status(self, unit: JobUnit) -> str:
        """The status the result on disk gives a planned job now (``run`` or ``skip: complete`` ...): a
        launcher re-checks it under its submission lock, after another sweep's jobs may have finished it."""
        split = bool(self.run.get("split_trials")) and len(unit.all_trials) > 1
        return self._disk_status(unit, split, bool(self.run.get("override_completed")))[0]

    def _disk_status(self, unit: JobUnit, split: bool, override: bool, listing: Optional[DirListing] = None) -> tuple[str, str]:
        aggregate = "aggregate: every trial is done, results.json is missing"
        verify = bool(self.run.get("verify"))
        st = result_status(unit.result_dir, unit.expected, unit.trials if split else unit.all_trials, unit.weights,
                           record=self.writes.append, verify=verify, listing=listing)
        if st.state == STALE:
            return (RUN, "override: stale result moved aside") if override else (SKIP_STALE, st.detail)
        if split and st.state != COMPLETE and set(unit.trials) <= set(st.done_trials) and not st.problems:
            # this trial is done; if every trial is and results.json is missing (a kill just before it was
            # written) or corrupt, the last trial's job runs again to aggregate
            has_results = listing.has(unit.result_dir, layout.RESULTS) if listing is not None else (unit.result_dir / layout.RESULTS).exists()
            if unit.trials[0] == unit.all_trials[-1] and (st.corrupt or not has_results):
                whole = result_status(unit.result_dir, unit.expected, unit.all_trials, unit.weights, verify=verify, listing=listing)
                if set(whole.done_trials) >= set(unit.all_trials) and not whole.problems:
                    why = f"corrupt: {st.corrupt}: set aside; " if st.corrupt else ""
                    return RUN, "override_completed" if override else why + aggregate
            return (RUN, "override_completed") if override else (SKIP_COMPLETE, "")
        if st.state == COMPLETE:
            if not override and unit.result_dir not in self._tidy:  # leftovers of killed writers: removed by a sweep that launches (commit)
                if not self._tidy:
                    tidied = self._tidy
                    self.writes.append(lambda: tidy_all(tidied.items()))
                self._tidy[unit.result_dir] = unit.identity
            return (RUN, "override_completed") if override else (SKIP_COMPLETE, "")
        if st.state == PARTIAL and not split:
            aggregate = "aggregate: every trial is done" if st.corrupt else aggregate
            note = aggregate if set(st.done_trials) >= set(unit.all_trials) else f"resume: trials {st.done_trials} already done"
            return RUN, f"{st.detail}; {note}" if st.detail else note
        return RUN, st.detail  # e.g. "incomplete: trial1/copa_demo.default.predictions.jsonl missing"


_PLANNED_ID = re.compile(r"planned_id='([0-9a-f]+)'")


def planned_id_override(digest: str) -> str:
    """The override that makes a job refuse to write a result other than ``digest`` (the planned one's
    identity digest, a prefix). Quoted: Hydra would read ``1234e56789012345`` as a float (inf) and
    ``1234567890123456`` as an int."""
    return f"planned_id='{digest}'"


_FROZEN = [False]  # gc_paused(keep=True) froze the heap; the next pause thaws it


@contextmanager
def gc_paused(keep: bool = False) -> Iterator[None]:
    """Python's cyclic garbage collector off while a plan builds its objects (a JobUnit, its dicts and paths
    per job: no cycles among them), on again after: at 100,000 jobs its full passes over the growing heap
    cost a fifth of the plan. Nested uses leave it to the outermost. ``keep``: what is built stays until the
    process ends (a dry run, ``status``): the heap is frozen (``gc.freeze``) as the collector comes back on,
    so that its first passes do not walk every object of the plan (a second or two at 100,000 jobs) to free
    nothing; the next pause thaws it (a process that plans again, such as a test run)."""
    was = gc.isenabled()
    gc.disable()
    if was and _FROZEN[0]:
        gc.unfreeze()
        _FROZEN[0] = False
    try:
        yield
    finally:
        if was:
            if keep:
                gc.freeze()
                _FROZEN[0] = True
            gc.enable()


def _key(kind: str, values: list[Any]) -> Any:
    """A dict key for plain ``values`` (strings, numbers, None and lists of them: a tuple), else their JSON."""
    def plain(v: Any) -> Any:
        if v is None or type(v) is str:
            return v
        if type(v) in (int, float, bool):
            return type(v), v  # True and 1 apart
        if type(v) in (list, tuple):
            return tuple(plain(x) for x in v)
        raise TypeError

    try:
        return (kind, plain(values))
    except TypeError:
        import json

        return kind + json.dumps(values, sort_keys=True, default=str)


def _interpolates(node: Any) -> bool:
    """Does a plain config tree hold an interpolation (``${...}``, escaped ones included)?"""
    if isinstance(node, dict):
        return any(_interpolates(v) for v in node.values())
    if isinstance(node, list):
        return any(_interpolates(v) for v in node)
    return isinstance(node, str) and "${" in node


def _with_trials(unit: JobUnit, trials: list[int]) -> JobUnit:
    u = object.__new__(JobUnit)  # dataclasses.replace, without re-running __init__ for every trial of a plan
    u.__dict__.update(unit.__dict__)
    u.trials = list(trials)
    return u

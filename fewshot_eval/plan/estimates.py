"""How long a sweep's jobs will run, from the wall times of earlier results of the same model setting.

    earlier results of model M under the output dir (results.json: wall_time_s, the trials it timed,
    its tasks and params)  ->  seconds per scored example of M
    a job's estimate = that rate x the examples one trial of the job scores x its trials

The rate comes from M's results of the job's own task setting and nshot when there are such results,
else of its nshot, else of any nshot (demonstrations make prompts longer). A job whose examples
cannot be counted (a hub dataset not on disk, an lm-eval catalog task) gets the median time per
trial of M's results of its task setting and nshot; a model without earlier results gets no
estimate. Model loading is part of a result's wall time, so it is spread over the examples.

Used for the sweep's ETA (dry run and start line) and ``timeout_min=auto`` (:func:`auto_limit`): the
SLURM time limit ``max(floor, ceil((max(estimate x factor, 60 s) + signal_delay_s + 60 s) / 60))``
minutes, per model pool (its longest job; all its jobs together for ``combine_tasks``), at least the
model setting's own ``timeout_min`` when a job of the pool has no estimate.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json
from fewshot_eval.store.dir_listing import DirListing

PER_GROUP = 3  # results read per (task setting, nshot) of a model: their times agree closely
PER_MODEL = 48  # results read per model at most: planning stays fast on trees of 10,000 results
AUTO = "auto"
FACTOR, FLOOR_MIN = 2.0, 15  # defaults of hydra.launcher.auto_timeout_factor / auto_timeout_floor_min
FALLBACK_MIN = 60  # a model setting's timeout_min when that is 'auto' too (settings.Resources' default)
# the params that choose what a trial scores (evaluate/tasks/selection.py): templates, languages, splits, sample cap
SIZE_KEYS = ("templates", "languages", "train_languages", "train_set", "eval_set", "n_eval_samples")


@dataclass
class Sample:
    """One earlier result of a model."""

    task_key: str
    nshot: int
    seconds: float  # its wall_time_s
    trials: int  # the trials those seconds cover
    examples: Optional[int]  # examples one trial scores (None: not countable)


@dataclass
class Estimate:
    seconds: Optional[float]  # None: no earlier result to go by
    basis: str  # "3 earlier results of random (same task setting and nshot)", or why there is none
    samples: int = 0


@dataclass
class History:
    """The earlier results under ``root``, read once per model setting and cached."""

    root: Path
    search: Sequence[Path]
    listing: Optional[DirListing] = None  # the plan's view of the tree (store/dir_listing.py): its dirs are not listed again
    _samples: dict[str, list[Sample]] = field(default_factory=dict)
    _sizes: dict[str, Optional[int]] = field(default_factory=dict)

    def size(self, tasks: Sequence[str], params: Mapping[str, Any]) -> Optional[int]:
        """Examples one trial of ``tasks`` under ``params`` scores (evaluate.tasks.task_checks.eval_size), cached
        per the params that choose what is scored."""
        chosen = {k: params.get(k) for k in SIZE_KEYS}
        key = json.dumps([list(tasks), chosen], sort_keys=True, default=str)
        if key not in self._sizes:
            from fewshot_eval.evaluate.tasks.task_checks import eval_size

            self._sizes[key] = eval_size(list(tasks), chosen, self.search)
        return self._sizes[key]

    def samples(self, model_key: str, wanted: Iterable[tuple[str, int]] = ()) -> list[Sample]:
        """Up to :data:`PER_MODEL` results of ``model_key`` (a checkpoint ``<m>__step<N>`` without its own:
        the other checkpoints' of ``<m>``), :data:`PER_GROUP` per task setting and nshot, the
        ``wanted`` (task setting, nshot) groups first."""
        if model_key in self._samples:
            return self._samples[model_key]
        groups = _result_files(self.root, glob.escape(model_key), self.listing)
        if not groups and "__step" in model_key:
            groups = _result_files(self.root, glob.escape(model_key.split("__step")[0]) + "__step*", self.listing)
        first = [g for g in dict.fromkeys(wanted) if g in groups]
        order = first + sorted(set(groups) - set(first))
        picked: list[Path] = []
        for rnd in range(PER_GROUP):  # round-robin over the groups: every group before a second of any
            for g in order:
                if rnd < len(groups[g]) and len(picked) < PER_MODEL:
                    picked.append(groups[g][rnd])
        out = []
        for f in picked:
            rec = read_json(f)
            sample = self._sample(rec) if isinstance(rec, dict) else None
            if sample is not None:
                out.append(sample)
        self._samples[model_key] = out
        return out

    def _sample(self, rec: dict[str, Any]) -> Optional[Sample]:
        wall, trials = rec.get("wall_time_s"), rec.get("timed_trials", rec.get("trials"))
        if not isinstance(wall, (int, float)) or wall <= 0 or not isinstance(trials, list) or not trials:
            return None
        params = rec.get("params") if isinstance(rec.get("params"), dict) else {}
        tasks = rec.get("tasks") if isinstance(rec.get("tasks"), list) else None
        examples = self.size(tasks, params) if tasks else None
        return Sample(str(rec.get("task_setting")), int(rec.get("nshot") or 0), float(wall), len(trials), examples or None)

    @staticmethod
    def estimate_without(model_key: str) -> Estimate:
        """The estimate of a job whose model has no earlier results (:meth:`samples` is empty)."""
        return Estimate(None, f"no earlier results of {model_key}")

    def estimate(self, unit: Any, wanted: Iterable[tuple[str, int]] = ()) -> Estimate:
        """Seconds the job of ``unit`` (a JobUnit) will run, and what that is based on."""
        samples = self.samples(unit.model_key, wanted)
        if not samples:
            return self.estimate_without(unit.model_key)
        trials = len(unit.trials)
        size = self.size(unit.task["tasks"], unit.params)
        same = [s for s in samples if s.task_key == unit.task_key and s.nshot == unit.nshot]
        if size:
            for pool, what in ((same, "same task setting and nshot"), ([s for s in samples if s.nshot == unit.nshot], "same nshot"),
                               (samples, "any nshot")):
                counted = [s for s in pool if s.examples]
                if counted:
                    rate = sum(s.seconds for s in counted) / sum(s.examples * s.trials for s in counted)  # type: ignore[operator]
                    return Estimate(rate * size * trials, _basis(len(counted), unit.model_key, what), len(counted))
        if same:
            per_trial = statistics.median(s.seconds / s.trials for s in same)
            return Estimate(per_trial * trials, _basis(len(same), unit.model_key, "same task setting and nshot, per trial"), len(same))
        return Estimate(None, f"no earlier results of {unit.model_key} whose examples can be counted or of this task setting and nshot")


def _basis(n: int, model: str, what: str) -> str:
    return f"{n} earlier result{'s' if n != 1 else ''} of {model} ({what})"


def _result_files(root: Path, model_pattern: str, listing: Optional[DirListing] = None) -> dict[tuple[str, int], list[Path]]:
    """``results.json`` files of one model setting (a glob pattern) under ``root``, by (task setting, nshot):
    ``root.glob(f"*/{model_pattern}/*/*/results.json")``, each dir listed once through ``listing`` (the plan's,
    which has listed the plan's result dirs already: 50,000 of them in a tree of 100,000 jobs)."""
    listing = listing if listing is not None else DirListing(up=0)
    out: dict[tuple[str, int], list[Path]] = {}
    found = []
    for run in _subdirs(listing, os.fspath(root)):
        for model in _subdirs(listing, run, model_pattern):
            for task in _subdirs(listing, model):
                for rdir in _subdirs(listing, task):
                    if layout.RESULTS in listing.names(rdir, 0):  # type: ignore[operator] (a listed dir)
                        found.append(os.path.join(rdir, layout.RESULTS))
    for f in sorted(found, key=lambda f: f.split(os.sep)):  # as Paths sort: part by part
        rdir, _ = os.path.split(f)
        task, name = os.path.split(rdir)
        nshot = name.split("shot.")[0]
        try:
            out.setdefault((os.path.basename(task), int(nshot)), []).append(Path(f))
        except ValueError:
            continue
    return out


def _subdirs(listing: DirListing, path: str, pattern: str = "*") -> list[str]:
    """The dirs in ``path`` (those that can be listed) whose names match the glob ``pattern``, hidden ones
    too, as pathlib's glob."""
    names = listing.names(path, 0)
    if not names:
        return []
    children = (os.path.join(path, n) for n in sorted(names) if pattern == "*" or fnmatch.fnmatchcase(n, pattern))
    return [c for c in children if listing.names(c, 0) is not None]


def auto_limit(seconds: float, factor: float = FACTOR, floor_min: int = FLOOR_MIN, signal_delay_s: float = 120) -> int:
    """``timeout_min=auto``: minutes for a job estimated at ``seconds``: its work time with a safety
    ``factor`` (at least the minute settings.time_limit_problem asks), the lead time of submitit's USR2
    (``signal_delay_s``) plus SLURM's early-signal slack, and at least ``floor_min``."""
    from fewshot_eval.settings import EARLY_SIGNAL_SLACK_S, MIN_WORK_S

    work = max(seconds * factor, MIN_WORK_S)
    return max(int(floor_min), math.ceil((work + float(signal_delay_s or 0) + EARLY_SIGNAL_SLACK_S) / 60))


def fmt_duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d04h``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{round(s / 60)}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def makespan(seconds: Sequence[float], slots: int) -> float:
    """About how long ``seconds`` of jobs take on ``slots`` parallel slots (greedy, longest first)."""
    if not seconds:
        return 0.0
    if slots <= 1:
        return float(sum(seconds))
    if len(seconds) > 4096:  # a bound that is close for many jobs: the average load, or the longest job
        return max(sum(seconds) / slots, max(seconds))
    import heapq

    lanes = [0.0] * min(slots, len(seconds))
    for s in sorted(seconds, reverse=True):
        heapq.heappush(lanes, heapq.heappop(lanes) + s)
    return max(lanes)


def sweep_eta(jobs: Sequence[Any], pool_slots: Callable[[Any], int], workers: Optional[int] = None) -> tuple[Optional[float], str]:
    """(seconds until the estimated jobs have run, the line that says so) for planned jobs with an
    ``estimate_s``: each model's jobs on its ``pool_slots`` at once (SLURM: pools side by side; a
    ``combine_tasks`` pool is one job), and with ``workers`` (a local launcher) at most that many in all."""
    known = [j for j in jobs if j.estimate_s is not None]
    if not known:
        return None, ""
    by_model: dict[str, list[Any]] = {}
    for j in known:
        by_model.setdefault(j.unit.model_key, []).append(j)
    spans = []
    for js in by_model.values():
        combine = bool(js[0].unit.model.get("job", {}).get("combine_tasks"))
        times = [sum(j.estimate_s for j in js)] if combine else [j.estimate_s for j in js]
        spans.append(makespan(times, 1 if combine else max(1, pool_slots(js[0]))))
    eta = max(spans)
    if workers:
        eta = max(eta, makespan([j.estimate_s for j in known], workers))
    unknown = len(jobs) - len(known)
    models = sorted({j.unit.model_key for j in jobs if j.estimate_s is None})
    without = (f"; {unknown} job{'s' if unknown != 1 else ''} of {', '.join(models[:5])}{' ...' if len(models) > 5 else ''} "
               f"without earlier results not counted") if unknown else ""
    total = sum(j.estimate_s for j in known)
    return eta, (f"ETA ~{fmt_duration(eta)} once running ({fmt_duration(total)} of job time for {len(known)} job"
                 f"{'s' if len(known) != 1 else ''}, from the wall times of earlier results{without})")


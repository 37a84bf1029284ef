"""Resolve one job -- (model setting, task setting, nshot[, trial]) -- to its params and result location.

The planner (before launch) and the job itself (at start) both call :func:`resolve_unit`, so
they always agree on where a result lives and whether it is complete.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from fewshot_eval.config import ConfigError, effective_params
from fewshot_eval.param_schema import check_values
from fewshot_eval.plan.expand import checkpoint_setting
from fewshot_eval.plan.identity import IdentityTemplate, TaskFingerprints, catalog_identity, weights_fingerprint
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
    fingerprint: str  # what this job records
    applicable: bool = True
    reason: str = ""
    accepted: frozenset[str] = field(default_factory=frozenset)  # fingerprints an existing result may carry
    weights: Optional[str] = None  # fingerprint of the model's weights (None: unknown / none)
    id_digest: str = ""
    requested_nshot: Optional[int] = None  # nshot as asked, when it was capped to the demonstration pool

    @property
    def config_digest(self) -> str:
        """Digest of the job's whole configuration (resources, batch size ... included): a failure
        recorded under another one does not count against this job."""
        from fewshot_eval.plan.identity import digest

        return digest({"model": self.model, "task": self.task, "params": self.params, "nshot": self.nshot})[:16]

    @property
    def expected(self) -> frozenset[str]:
        """Fingerprints that make an existing trial or result count as this job's."""
        return self.accepted or frozenset({self.fingerprint})


_POOLS: dict[str, Optional[int]] = {}
_POOL_KEYS = ("train_set", "eval_set", "languages", "train_languages", "n_eval_samples")


def _pool_size(tasks: Sequence[str], params: Mapping[str, Any], search: Sequence[Path]) -> Optional[int]:
    """Largest demonstration pool of a task setting under ``params`` (cached); None if unknown."""
    key = json.dumps([list(tasks), {k: params.get(k) for k in _POOL_KEYS}, [str(s) for s in search]], sort_keys=True, default=str)
    if key not in _POOLS:
        from fewshot_eval.evaluate.tasks.task_checks import demo_pool_size

        try:
            _POOLS[key] = demo_pool_size(tasks, dict(params), search)
        except ConfigError:  # broken data: the planning checks report it on the job's row
            _POOLS[key] = None
    return _POOLS[key]


_WEIGHTS: dict[tuple[Any, Any], tuple[float, Optional[str]]] = {}


def _weights(weights: Any, revision: Any) -> Optional[str]:
    """Weights fingerprint, cached for a minute (a plan resolves thousands of jobs of one model)."""
    import time

    hit = _WEIGHTS.get((weights, revision))
    if hit is None or time.monotonic() - hit[0] > 60:
        hit = (time.monotonic(), weights_fingerprint(weights, revision))
        _WEIGHTS[(weights, revision)] = hit
    return hit[1]


_HF_WEIGHTS: dict[tuple[str, tuple[Path, ...]], bool] = {}


def _loads_hf_weights(predictor: str, search: Sequence[Path]) -> bool:
    """The predictor loads HuggingFace weights, so they have a fingerprint (a capability of its class;
    False when the name is unknown: the model check reports that). Cached per registered name."""
    key = (predictor, tuple(search))
    if key not in _HF_WEIGHTS:
        from fewshot_eval.evaluate.registry import predictor_capability

        value = predictor_capability(predictor, "loads_hf_weights", search)
        if value is None:
            return False
        _HF_WEIGHTS[key] = bool(value)
    return _HF_WEIGHTS[key]


_handed: list[tuple[list[str], JobUnit]] = []  # the job about to run in this process and its planned unit


@contextmanager
def planned_unit(overrides: Sequence[str], unit: Optional[JobUnit]) -> Iterator[None]:
    """While the job with ``overrides`` runs in this process, :func:`handed_unit` gives its task function
    ``unit`` -- the planner's: the local launcher composes the job's config from the planner's own caches, so
    resolving that config again gives the same unit -- instead of it resolving the config again."""
    if unit is None:
        yield
        return
    _handed.append((list(overrides), unit))
    try:
        yield
    finally:
        _handed.pop()


def handed_unit(overrides: Sequence[str]) -> Optional[JobUnit]:
    """The unit :func:`planned_unit` handed over for exactly these overrides, or None."""
    if _handed and _handed[-1][0] == list(overrides):
        return _handed[-1][1]
    return None


def effective_nshot(nshot: int, tasks: Sequence[str], params: Mapping[str, Any], search: Sequence[Path]) -> int:
    """nshot above the demonstration pool gives the same demonstrations as the pool size: one result."""
    if nshot <= 0 or params.get("balanced"):
        return nshot
    pool = _pool_size(tasks, params, search)
    return pool if pool is not None and nshot > pool else nshot


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
    check: bool = True,
) -> JobUnit:
    """Layer the params, validate, and locate the result of one job.

    ``run`` holds the top-level config values (command-line values applied), ``cli_keys`` the
    top-level keys set on the command line or by the sweep. Pre-validated ``model``/``task``
    dicts may be passed to save re-validation; ``check=False`` skips the schema check of the values
    (fewshot_eval/param_schema.py) for a setting the caller has already checked (the planner checks
    each distinct setting once).
    """
    base = unit_base(model_key, task_key, model_node, task_node, run, cli_keys, cwd, search, model=model, task=task, check=check)
    return base.unit(run["nshot"], run.get("trial"))


class UnitBase:
    """What the jobs of one model setting, task setting and run values share, whatever their nshot and
    trial: the layered, checked params and what is derived from them once (the identity's parts, the task
    data's digests, the weights fingerprint, the result dirs' parent). The planner keeps one per distinct
    setting; :meth:`unit` gives the JobUnit of an nshot and trial, as :func:`resolve_unit` does."""

    def __init__(self, model_key: str, task_key: str, model: dict[str, Any], task: dict[str, Any], params: dict[str, Any],
                 run: Mapping[str, Any], cwd: Path, search: Sequence[Path], memo: Optional[dict[Any, Any]] = None) -> None:
        self.model_key, self.task_key, self.model, self.task, self.params = model_key, task_key, model, task, params
        self.search = search
        self.tasks = task["tasks"]
        self.memo = memo  # what the settings of one plan share: the model's identity part, the tasks' digests, result dirs' parents
        if memo is None:
            self.parent = layout.result_parent(output_root(run, cwd), task["run_name"], model_key, task_key)
        else:
            key = ("parent", str(run["output_dir"]), cwd, task["run_name"], model_key)
            above = memo.get(key)
            if above is None:
                above = memo[key] = layout.result_parent(output_root(run, cwd), task["run_name"], model_key, "")
            self.parent = above / task_key
        self.allowed = params.get("allowed_nshot")
        self._pool: Any = _UNKNOWN
        self._derived: Optional[tuple[IdentityTemplate, TaskFingerprints, Optional[str]]] = None

    def _derive(self) -> tuple[IdentityTemplate, TaskFingerprints, Optional[str]]:
        """The identity's parts, the task data's digests and the weights fingerprint (after a first job's nshot is checked)."""
        if self._derived is None:
            model, params, search, memo = self.model, self.params, self.search, self.memo
            template = IdentityTemplate(model, self.tasks, params, catalog_identity(self.tasks, search), memo=memo)
            key = ("tasks", tuple(self.tasks), tuple(search))
            fingerprints_of = memo.get(key) if memo is not None else None
            if fingerprints_of is None:
                fingerprints_of = TaskFingerprints(self.tasks, search)
                if memo is not None:
                    memo[key] = fingerprints_of
            weights = _weights(model.get("weights"), model.get("revision")) if _loads_hf_weights(params["predictor"], search) else None
            self._derived = (template, fingerprints_of, weights)
        return self._derived

    def effective_nshot(self, nshot: int) -> int:
        """:func:`effective_nshot`, the demonstration pool looked up once."""
        if nshot <= 0 or self.params.get("balanced"):
            return nshot
        if self._pool is _UNKNOWN:
            key = ("pool", id(self.params), tuple(self.tasks), tuple(self.search))
            hit = self.memo.get(key) if self.memo is not None else None
            if hit is None or hit[0] is not self.params:  # settings that share their params dict: looked up once
                hit = (self.params, _pool_size(self.tasks, self.params, self.search))
                if self.memo is not None:
                    self.memo[key] = hit
            self._pool = hit[1]
        return self._pool if self._pool is not None and nshot > self._pool else nshot

    def unit(self, nshot: Any, trial: Any = None) -> JobUnit:
        if not isinstance(nshot, int) or isinstance(nshot, bool) or nshot < -1:
            raise ConfigError(f"nshot must be an integer >= -1 (-1 = the whole train set), got {nshot!r}.")
        requested, nshot = nshot, self.effective_nshot(nshot)
        num_trials = self.params["num_trials"]
        if not isinstance(num_trials, int) or num_trials < 1:
            raise ConfigError(f"num_trials must be an integer >= 1, got {num_trials!r}.")
        all_trials = [0] if nshot == 0 else list(range(num_trials))
        trials = all_trials if trial is None else [trial]
        if trial is not None and trial not in all_trials:
            raise ConfigError(f"trial={trial} is outside this job's trials {all_trials} (num_trials={num_trials}, nshot={nshot}).")
        template, fingerprints_of, weights = self._derive()
        id_digest = template.digest(nshot)
        fingerprint, accepted = fingerprints_of(id_digest)
        applicable, reason = True, ""
        if self.allowed is not None and requested not in self.allowed:
            applicable, reason = False, f"task setting '{self.task_key}' runs only with nshot in {self.allowed}"
        return JobUnit(self.model_key, self.task_key, self.model, self.task, self.params, nshot, trials, all_trials,
                       layout.child(self.parent, layout.result_name(nshot, id_digest)), template.identity(nshot), fingerprint, applicable, reason,
                       accepted=accepted, weights=weights, id_digest=id_digest, requested_nshot=requested if requested != nshot else None)


_UNKNOWN = object()
_SCALARS = frozenset({str, int, bool, type(None)})


def _plain_key(params: dict[str, Any]) -> Optional[tuple[Any, ...]]:
    """A key equal for params dicts that serialise to the same JSON (keys in order, values of the same type;
    floats by repr: 0.0 and -0.0 apart); None when a value is a list or mapping (such dicts are not shared)."""
    out: list[Any] = ["params"]
    for k, v in params.items():
        t = type(v)
        if t in _SCALARS:
            out.append((k, t, v))
        elif t is float:
            out.append((k, t, repr(v)))
        else:
            return None
    return tuple(out)


def unit_base(
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
    check: bool = True,
    memo: Optional[dict[Any, Any]] = None,
) -> UnitBase:
    """The :class:`UnitBase` of a model and task setting under ``run`` (its nshot and trial are not read).
    ``memo``: a dict the settings of one plan share (the planner's), for what they have in common."""
    model = model if model is not None else model_setting(model_node, model_key)
    task = task if task is not None else task_setting(task_node, task_key)
    if model.get("checkpoints"):  # a checkpoint sweep: this job evaluates checkpoint run['checkpoint']
        if run.get("checkpoint") is None:
            raise ConfigError(
                f"model '{model_key}' is a checkpoint sweep (checkpoints: {model['checkpoints']}): run it with -m to "
                f"evaluate every checkpoint, or pick steps with checkpoint=<N>[,<N>...]."
            )
        model_key, model = checkpoint_setting(model_key, model, run["checkpoint"])
    cli = {k: run[k] for k in cli_keys if k in run}
    params = effective_params(
        run, model["eval"], task["eval"], run.get("final_overrides") or {}, cli, model_key=model_key, task_key=task_key
    )
    params["predictor"] = params.get("predictor") or model["predictor"]
    if check:
        check_values(run, params, task["tasks"], search, explicit=cli)
    if memo is not None:  # settings with equal params share one dict: what is derived from it is derived once (by its id)
        key = _plain_key(params)
        if key is not None:
            params = memo.setdefault(key, params)
    return UnitBase(model_key, task_key, model, task, params, run, cwd, search, memo)


def unit_resources(unit: Any) -> dict[str, Any]:
    """What a job of ``unit`` asks a scheduler for: its model setting's resources, with the GPUs per node
    its predictor's class says (``Predictor.node_gpus``: none for a served model or a baseline, one per
    data-parallel copy). The SLURM pools submit it; the plan table shows it."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_class

    res = dict(unit.model["resources"])
    res["gpus_per_node"] = predictor_class(unit.params["predictor"], config_dirs()).node_gpus(unit.model, int(res.get("gpus_per_node") or 0))
    return res

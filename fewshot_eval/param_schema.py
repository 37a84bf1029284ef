"""The schema of the run and evaluation parameters: type, range and meaning of every top-level key of
``conf/config.yaml`` that a job reads.

The defaults live in ``conf/config.yaml`` only; here each key has its type (the annotation) and its
rules and meaning (the field's metadata). :func:`check_values` validates a job's values against it,
once per distinct setting (the planner caches by the sweep's overrides), and raises a
:class:`~fewshot_eval.config.ConfigError` whose one line names the key, the value and the fix.
Values are checked, never rewritten: a result's identity is computed from them as they are.
``docs/parameters.md`` shows :func:`markdown` (``tests/test_rejected_input.py`` checks it).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Optional, Sequence, Union

from fewshot_eval.config import ConfigError

SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit
COUNT_MAX = 2**31 - 1  # a number of examples, tokens ... beyond any data set


def _p(meaning: str, **rules: Any) -> Any:
    """A schema field: no default (``conf/config.yaml`` holds it), its meaning and rules as metadata.
    Rules: ``min``/``max`` (numbers), ``nonempty`` (strings), ``per_task`` (a mapping's keys are task names)."""
    return field(metadata={"meaning": meaning, **rules})


Scoring = Literal["sum", "mean", "suffix", "unconditional-norm", "char-norm"]
Calibrator = Literal["average_option"]
DemoSampling = Literal["per_trial", "per_example", "per_example_lm_eval"]
Dtype = Literal["float32", "float16", "bfloat16"]
Names = Union[str, list[str]]
PerTask = Optional[Names]  # the value for one task of a per-task mapping


@dataclass
class RunParams:
    """Where and how much: read by the sweep, not part of a result's identity (except ``nshot``)."""

    output_dir: str = _p("results go under it; relative paths are taken from the launch directory", nonempty=True)
    nshot: int = _p("demonstrations per prompt; -1 = the whole train set", min=-1, max=COUNT_MAX)
    split_trials: bool = _p("one job per trial instead of all trials in one job")
    trial: Optional[int] = _p("set by split_trials=true: the one trial a job runs", min=0, max=COUNT_MAX)
    override_completed: bool = _p("re-run complete/stale results (old ones are moved aside)")
    dry_run: bool = _p("print the plan, launch nothing")
    max_parallel: Optional[int] = _p("override every model setting's max_parallel", min=1, max=COUNT_MAX)
    max_failures: int = _p("a job that failed this often with the same error is not relaunched", min=1, max=COUNT_MAX)
    retry_failed: bool = _p("relaunch jobs that failed max_failures times anyway")
    planned_id: Optional[str] = _p("set by the sweep: the result id a job must write")
    checkpoint: Optional[Union[int, str]] = _p("set by the sweep for a model setting with 'checkpoints': the step evaluated")
    prefetch: bool = _p("fetch the jobs' hub inputs into the cache first, then launch")
    hf_offline: Optional[bool] = _p("set by the sweep: the job runs with HuggingFace offline mode")
    job_list: Optional[str] = _p("a CSV written by `fewshot-eval status ... --missing FILE`: run exactly its jobs")
    verify: bool = _p("check the content (sha256) of every file of a complete result before skipping it, not only of small ones")


@dataclass
class EvalParams:
    """Evaluation parameters: the top level, ``model.eval``, ``task.eval`` and an experiment's ``final_overrides``
    may set them (precedence: fewshot_eval/config.py). A per-task mapping is ``{<task>: value}``."""

    allowed_nshot: Optional[Union[int, list[int]]] = _p("task settings only: the nshot values the setting runs with")
    num_trials: int = _p("demonstration samples (seeds seed..seed+num_trials-1); nshot=0 runs one", min=1, max=COUNT_MAX)
    seed: int = _p("trial t samples its demonstrations with seed + t", min=0, max=SEED_MAX)
    scoring: Scoring = _p("how candidates' log-probs are compared (char-norm = lm-eval's acc_norm)")
    predictor: Optional[str] = _p("null = the model setting's predictor")
    calibrator: Optional[Calibrator] = _p("null = no calibration")
    calibration_options: Optional[Union[Names, dict[str, PerTask]]] = _p("content-free variants for the calibrator", per_task=True)
    templates: Optional[Union[Names, dict[str, PerTask]]] = _p("template name(s), per task or for all; null = each task's default",
                                                                       per_task=True)
    languages: Optional[Union[Names, dict[str, PerTask]]] = _p("multilingual tasks: languages evaluated; null = all", per_task=True)
    train_languages: Optional[Union[str, dict[str, Optional[str]]]] = _p("demonstrations in another language (cross-lingual)", per_task=True)
    train_set: Optional[str] = _p("split the demonstrations come from; null = the task's train split", nonempty=True)
    eval_set: Optional[str] = _p("split that is evaluated; null = the task's eval split", nonempty=True)
    train_sep: str = _p("joins demonstrations and the test prompt")
    description: Optional[Union[str, dict[str, Optional[str]]]] = _p("text put before the demonstrations", per_task=True)
    balanced: bool = _p("class-balanced demonstrations (nshot must divide by the number of classes)")
    demo_sampling: DemoSampling = _p("per_trial: one demonstration set per trial; per_example: one per example")
    n_eval_samples: int = _p("evaluate only the first N examples; 0 = all", min=0, max=COUNT_MAX)
    max_length: Optional[int] = _p("context length in tokens; null = the model's (at most the model's positions)", min=1, max=COUNT_MAX)
    batch_size: int = _p("requests per forward pass", min=1, max=COUNT_MAX)
    dtype: Dtype = _p("weights' dtype")
    device: str = _p("auto | cpu | mps | cuda | cuda:<index> (a local sweep checks the device exists)")
    unconditional_prompt: str = _p("neutral prompt for scoring=unconditional-norm")
    keep_score_cache: bool = _p("keep <result>/score_cache/ after the result completes")
    extra_metrics: Optional[Union[Names, dict[str, PerTask]]] = _p("registered metrics added to a task's own", per_task=True)
    max_new_tokens: Optional[int] = _p("generation: new tokens at most; null = the task's, else 32", min=1, max=COUNT_MAX)
    until: Optional[Union[Names, dict[str, PerTask]]] = _p("generation: stop string(s); null = the task's, else train_sep", per_task=True)
    do_sample: bool = _p("generation: sample (seeded with the trial's seed) instead of greedy decoding")
    temperature: float = _p("generation: sampling temperature (do_sample=true)", gt=0)


RUN_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunParams)}
EVAL_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(EvalParams)}


def choices(key: str) -> tuple[str, ...]:
    """The values of an enum parameter (``scoring``, ``calibrator``, ``demo_sampling``, ``dtype``)."""
    hint = _hints()[key]
    while typing.get_origin(hint) is Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_args(hint)


@functools.lru_cache(maxsize=1)
def _hints() -> dict[str, Any]:
    return {**typing.get_type_hints(RunParams), **typing.get_type_hints(EvalParams)}


# ---- type checking ------------------------------------------------------------------------------
def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is Union:
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return isinstance(value, str) and value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, Mapping) and all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    raise TypeError(f"param_schema: unsupported annotation {hint!r}")


def describe(hint: Any, rules: Mapping[str, Any] | None = None) -> str:
    """The type in words: ``an integer >= 1``, ``true or false``, ``one of sum, mean`` ..."""
    rules = rules or {}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:  # sorted: typing caches equal unions, so the order of their args is not the annotation's
        parts = sorted(describe(a, rules) for a in args if a is not type(None))
        return " or ".join(parts + (["null"] if type(None) in args else []))
    if origin is Literal:
        return "one of " + ", ".join(args)
    if hint is bool:
        return "true or false"
    if hint in (int, float):
        word = "an integer" if hint is int else "a number"
        lo, hi = rules.get("min"), rules.get("max")
        if rules.get("gt") is not None:
            return f"{word} > {rules['gt']}"
        if lo is not None and hi is not None and (hi < COUNT_MAX or rules.get("show_max")):
            return f"{word} in [{lo}, {hi}]"
        return f"{word} >= {lo}" if lo is not None else word
    if hint is str:
        return "a non-empty string" if rules.get("nonempty") else "a string"
    if origin is list:
        return "a list of " + {str: "strings", int: "integers"}.get(args[0], f"({describe(args[0])})")
    if origin is dict:
        return "{<task>: " + describe(args[1]) + "}"
    return str(hint)


WHERE_SET = "set it on the command line or fix it where it is set (a model/task setting's eval:, an experiment)"


def _fix(key: str, hint: Any, rules: Mapping[str, Any], is_eval: bool) -> str:
    if hint is bool or typing.get_args(hint) == (bool, type(None)):
        return f"Pass {key}=true or {key}=false"
    example = {"seed": "seed=0", "max_failures": "max_failures=3", "max_length": "max_length=512 (or null: the model's)",
               "n_eval_samples": "n_eval_samples=0 (all)", "templates": "templates={copa: default}", "num_trials": "num_trials=3",
               "batch_size": "batch_size=8"}.get(key)
    tail = f", e.g. {example}" if example else ""
    if is_eval:
        return f"{WHERE_SET[0].upper()}{WHERE_SET[1:]}{tail}"
    return f"Pass {example}" if example else f"Pass a valid {key}, or leave it out"


# (is_eval, key, type, value) of plain values that passed check_value: a plan checks the same run values and
# mostly the same params for each of its (up to 10,000) settings
_PASSED: set[tuple[bool, str, type, Any]] = set()
_PLAIN = frozenset({str, int, float, bool, type(None)})


def check_value(key: str, value: Any, *, is_eval: bool) -> None:
    """``value`` of parameter ``key`` has its type and range; raises ConfigError naming key, value and fix."""
    memo = (is_eval, key, type(value), value) if type(value) in _PLAIN else None
    if memo is not None and memo in _PASSED:
        return
    _check_value(key, value, is_eval)
    if memo is not None:
        if len(_PASSED) > 100_000:
            _PASSED.clear()
        _PASSED.add(memo)


def _check_value(key: str, value: Any, is_eval: bool) -> None:
    f = (EVAL_FIELDS if is_eval else RUN_FIELDS)[key]
    hint, rules = _hints()[key], f.metadata
    ok = _matches(value, hint)
    if ok and isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi, gt = rules.get("min"), rules.get("max"), rules.get("gt")
        ok = (lo is None or value >= lo) and (hi is None or value <= hi) and (gt is None or value > gt)
    if ok and isinstance(value, str) and rules.get("nonempty"):
        ok = bool(value.strip())
    if not ok:
        close = difflib.get_close_matches(value, choices(key), n=1) if isinstance(value, str) and _is_enum(hint) else []
        mean = f" (did you mean '{close[0]}'?)" if close else ""
        too_big = isinstance(value, int) and rules.get("max") is not None and value > rules["max"]
        what = describe(hint, {**rules, "show_max": too_big})
        raise ConfigError(f"{key} must be {what}, got {_show(value)}{mean}. {_fix(key, hint, rules, is_eval)}.{_text_hint(key, value, hint)}")


def _text_hint(key: str, value: Any, hint: Any) -> str:
    """For text that Hydra's override grammar or YAML typed (``1e5`` -> 100000.0, ``true``, ``null``): how to pass it as text."""
    leaves = list(value.values()) if isinstance(value, dict) else list(value) if isinstance(value, list) else [value]
    if not _takes_text(hint) or not any(v is None or isinstance(v, (bool, int, float)) for v in leaves):
        return ""
    return f" Unquoted, Hydra and YAML read 1e5, 12, true and null as a number, a boolean or null: quote text ({key}='...')."


def _takes_text(hint: Any) -> bool:
    return hint is str or any(_takes_text(a) for a in typing.get_args(hint) if not isinstance(a, str))


def _is_enum(hint: Any) -> bool:
    args = typing.get_args(hint) if typing.get_origin(hint) is Union else (hint,)
    return any(typing.get_origin(a) is Literal for a in args)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) is Union and type(None) in typing.get_args(hint)


def typed_params(params: Mapping[str, Any]) -> EvalParams:
    """``params`` as typed fields (what the evaluator reads): a missing key, or null where null is not one of
    the key's values, is its default from ``conf/config.yaml`` (as :func:`fewshot_eval.config.eval_param`).
    The values are a checked job's (planning checked them); nothing is converted."""
    from fewshot_eval.config import default_params

    defaults = default_params()
    hints = _hints()
    values = {}
    for key in EVAL_FIELDS:
        value = params.get(key)
        if value is None and (key not in params or not _optional(hints[key])):
            value = defaults.get(key)
        values[key] = value
    return EvalParams(**values)


# ---- known task names for per-task mappings ----------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _task_def_names(search: tuple[Path, ...]) -> frozenset[str]:
    return frozenset(p.stem for d in search for p in (d / "task_def").glob("*.yaml"))


@functools.lru_cache(maxsize=1)
def _per_task_keys() -> tuple[str, ...]:
    return tuple(k for k, f in EVAL_FIELDS.items() if f.metadata.get("per_task"))


def check_task_keys(params: Mapping[str, Any], tasks: Sequence[str], search: Sequence[Path]) -> None:
    """Each key of a per-task mapping (``templates={copa: x}``) names a task: one of this job's, a task
    definition of the config search path, or an lm-eval catalog task (``lm_eval:<name>``)."""
    for key in _per_task_keys():
        value = params.get(key)
        if value is None or not isinstance(value, (dict, Mapping)):  # dict first: isinstance against the ABC alone is slow
            continue
        known = None
        for name in value:
            if name in tasks or str(name).startswith("lm_eval:"):
                continue
            known = known if known is not None else _task_def_names(tuple(search))
            if name in known:
                continue
            close = difflib.get_close_matches(str(name), [*tasks, *sorted(known)], n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{key}={_show(dict(value))}: unknown task '{name}'{hint}; the keys of {key} are task names "
                              f"(this job's tasks: {', '.join(tasks)}). Fix the key, e.g. {key}={{{tasks[0]}: ...}}.")


# ---- rules across parameters -----------------------------------------------------------------------
def check_rules(run: Mapping[str, Any], params: Mapping[str, Any], explicit: Iterable[str] = ()) -> None:
    """What no single key's type says: values that are ignored or contradict another key. ``explicit``: the
    keys set on the command line (a task setting may carry calibration options that ``calibrator=null`` turns
    off, as recalc's results do; options given with no calibrator at all are a mistake)."""
    if run.get("trial") is not None and not run.get("split_trials"):
        raise ConfigError(f"trial={run['trial']}: trial is set by split_trials=true sweeps (one job per trial); without "
                          f"split_trials a job runs all its trials. Drop trial=, or pass split_trials=true trial={run['trial']}.")
    if params.get("scoring") == "unconditional-norm" and not str(params.get("unconditional_prompt") or "").strip():
        raise ConfigError(f"unconditional_prompt={_show(params.get('unconditional_prompt'))}: scoring=unconditional-norm divides by "
                          "each candidate's probability after this prompt, so it must not be empty. Pass e.g. unconditional_prompt=Answer:")
    if "calibration_options" in explicit and params.get("calibration_options") not in (None, {}) and not params.get("calibrator"):
        raise ConfigError(f"calibration_options={_show(params['calibration_options'])}: the options are used only by a calibrator, "
                          "and calibrator is null. Pass calibrator=average_option, or calibration_options=null.")


def check_values(run: Mapping[str, Any], params: Mapping[str, Any], tasks: Sequence[str] = (), search: Sequence[Path] = (),
                 explicit: Iterable[str] = ()) -> None:
    """A job's run values (``run``: top-level, command line applied) and layered evaluation ``params``
    against the schema; raises ConfigError (one line: key, value, fix) for the first wrong one. ``explicit``:
    the keys the command line sets (:func:`check_rules`)."""
    out = run.get("output_dir")
    if out is None or not str(out).strip():
        raise ConfigError(
            f"output_dir is empty ({out!r}): results would land in the launch directory and Hydra's logs under '/'. "
            f"Pass output_dir=<a directory>, e.g. output_dir=results."
        )
    passed, plain = _PASSED, _PLAIN  # check_value's memo, looked up here: a plan checks each of its settings
    for key in RUN_FIELDS:
        if key in run and key != "output_dir":
            value = run[key]
            if type(value) not in plain or (False, key, type(value), value) not in passed:
                check_value(key, value, is_eval=False)
    for key in EVAL_FIELDS:
        if key in params and key != "allowed_nshot":  # allowed_nshot: checked with its task setting
            value = params[key]
            if type(value) not in plain or (True, key, type(value), value) not in passed:
                check_value(key, value, is_eval=True)
    if tasks:
        check_task_keys(params, tasks, search)
    check_rules(run, params, explicit)


def markdown() -> str:
    """The parameter table of ``docs/parameters.md``."""
    lines = []
    for title, fields in (("Run parameters", RUN_FIELDS), ("Evaluation parameters", EVAL_FIELDS)):
        lines += [f"### {title}", "", "| key | type and range | meaning |", "|---|---|---|"]
        for key, f in fields.items():
            lines.append(f"| `{key}` | {describe(_hints()[key], f.metadata)} | {f.metadata['meaning']} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(markdown())

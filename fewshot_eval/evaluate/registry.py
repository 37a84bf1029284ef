"""Named parts of the evaluator: predictors (model backends) and metrics.

A predictor is one class registered under a name, declaring the request operations it
supports; its other capabilities are class attributes (see ``Predictor``), asked with
:func:`predictor_capability`, never by testing a predictor's name. A metric is one function
registered under a name with its aggregation over trials.
Two options of :func:`register_metric` say which tasks a metric scores and what it gets:

* ``kind``: ``"choice"`` (default) -- every task kind that ranks or scores text (``choice``,
  ``minimal_pairs``, ``perplexity``); ``"generate"`` -- ``kind: generate`` tasks. A task
  definition may name only metrics of its kind (:func:`metric_kind`).
* ``over``: ``"labels"`` (default) -- ``fn(gold labels, predicted labels)``; for
  ``kind="generate"``, ``fn(reference lists, generated outputs)``. ``"rows"`` -- ``fn(rows)``,
  the sub-result's prediction rows (metrics that need scores, groups, token counts).

So: label metrics (``accuracy``), row metrics (``over="rows"``: ``gold_perplexity``, ``f1a``,
``word_perplexity``) and generation metrics (``kind="generate"``: ``exact_match``, ``bleu``).
``fn`` returns a float (×100 for rates); or :class:`Scored` to record how it computed the value
(sacrebleu's signature, stored as ``<name>_signature``); or None when it does not apply (a
perplexity of a baseline): the metric is then left out::

    from fewshot_eval.evaluate.backends.predictor import Predictor
    from fewshot_eval.evaluate.registry import register_metric, register_predictor

    @register_metric("label_match")
    def label_match(gold, pred):
        return 100.0 * sum(g == p for g, p in zip(gold, pred)) / max(len(gold), 1)

    @register_metric("starts_right", kind="generate")
    def starts_right(references, outputs):
        return 100.0 * sum(any(o.strip().startswith(r) for r in refs) for refs, o in zip(references, outputs)) / max(len(outputs), 1)

    @register_predictor("my_lm", operations=("loglikelihood",))
    class MyLM(Predictor):  # HFPredictor (backends/hf_base.py) for a HuggingFace checkpoint: its tokenisation and checks
        uses_gpus = False    # capabilities are class attributes with defaults (see Predictor)
        def loglikelihood(self, requests): ...

Built-in parts register themselves when their module is imported (:data:`BUILTIN_MODULES`).
Your own: a Python file in ``<config dir>/plugins/`` (``--config-dir``), or a module of an
installed package named by an entry point in the group ``fewshot_eval.plugins``. A name that
is not registered is an error listing the registered ones.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from fewshot_eval.config import ConfigError

# Packages of the built-in parts: every module in them (sub-packages included) is imported once, and
# its decorated classes and functions register themselves -- a new backend or metric is one module in
# its package, with no list to edit.
BUILTIN_MODULES = ("fewshot_eval.evaluate.metrics", "fewshot_eval.evaluate.backends")
# Modules of release 0.2.0 a plugin may still import: where their contents went (named in the load error).
MOVED_MODULES = {
    "fewshot_eval.evaluate.api": "fewshot_eval.evaluate.backends.predictor (Predictor, Request, Loglik, GenerationRequest)",
    "fewshot_eval.evaluate.metrics": "fewshot_eval.evaluate.metrics.label_metrics (accuracy, macro_f1) and "
                                     "fewshot_eval.evaluate.metrics.compute (compute_metrics)",
    "fewshot_eval.evaluate.text_metrics": "fewshot_eval.evaluate.metrics.text_metrics",
    "fewshot_eval.evaluate.clm": "fewshot_eval.evaluate.backends.clm (CausalLMPredictor, load_model; "
                                 "the shared HuggingFace base: fewshot_eval.evaluate.backends.hf_base.HFPredictor)",
    "fewshot_eval.evaluate.baselines": "fewshot_eval.evaluate.backends.baselines",
    "fewshot_eval.evaluate.tiny_model": "fewshot_eval.evaluate.backends.tiny_model",
    "fewshot_eval.evaluate.tasks": "fewshot_eval.evaluate.tasks.definitions (load_task_def), .task_data (load_split) "
                                   "and .selection (split_data, select_templates, select_languages, select_metrics)",
    "fewshot_eval.evaluate.shapes": "fewshot_eval.evaluate.tasks.shapes and fewshot_eval.evaluate.metrics.prediction_rows (is_correct)",
}
ENTRY_POINT_GROUP = "fewshot_eval.plugins"
OPERATIONS = ("loglikelihood", "loglikelihood_rolling", "generate_until")
METRIC_KINDS = ("choice", "generate")  # the tasks a metric scores (see metric_kind)
METRIC_INPUTS = ("labels", "rows")  # what a metric's fn gets


@dataclass(frozen=True)
class Scored:
    """A metric value with how it was computed (stored as ``<metric>_signature``)."""

    value: float
    signature: str = ""


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., Any]  # see the module docstring: (gold, pred), (references, outputs) or (rows)
    aggregation: str = "mean"  # over trials: mean, with std and a 95% interval
    higher_is_better: bool = True
    kind: str = "choice"  # the tasks it scores: choice (every ranking/scoring task kind) | generate
    over: str = "labels"  # "labels": fn(gold, pred) (generate: fn(references, outputs)); "rows": fn(prediction rows)
    ideal: Optional[float] = None  # a target value (50 for stereotype scores): closer is better, higher_is_better ignored


def metric_kind(task_kind: str) -> str:
    """The metric kind that scores a task of ``task_kind``: generate for generation tasks, else choice."""
    return "generate" if task_kind == "generate" else "choice"


_PREDICTORS: dict[str, type] = {}
_METRICS: dict[str, Metric] = {}
_loaded: set[str] = set()


def register_predictor(name: str, *, operations: Iterable[str] = ("loglikelihood",)) -> Callable[[type], type]:
    """Class decorator: register a predictor under ``name`` with the request operations it supports."""
    ops = tuple(operations)
    bad = [o for o in ops if o not in OPERATIONS]
    if bad:
        raise ValueError(f"predictor '{name}': unknown operations {bad}. Valid: {', '.join(OPERATIONS)}.")

    def deco(cls: type) -> type:
        cls.name = name  # type: ignore[attr-defined]
        cls.operations = frozenset(ops)  # type: ignore[attr-defined]
        _PREDICTORS[name] = cls
        return cls

    return deco


def register_metric(name: str, *, aggregation: str = "mean", higher_is_better: bool = True, kind: str = "choice",
                    over: str = "labels", ideal: Optional[float] = None) -> Callable[[Callable], Callable]:
    """Function decorator: register ``fn`` as metric ``name`` for tasks of ``kind`` (``choice`` or
    ``generate``). ``over="labels"``: ``fn(gold, pred) -> float | Scored`` (generate:
    ``fn(references, outputs)``); ``over="rows"``: ``fn(rows) -> float | Scored | None`` over a
    sub-result's prediction rows (metrics that need scores, groups or token counts; see
    :mod:`fewshot_eval.evaluate.metrics.shape_metrics`). ``higher_is_better=False`` for perplexities; ``ideal``
    for a metric whose best value is a target (50 for stereotype scores): reports rank by the
    distance to it."""
    if kind not in METRIC_KINDS:
        raise ValueError(f"metric '{name}': unknown kind '{kind}'. Valid: {', '.join(METRIC_KINDS)}.")
    if over not in METRIC_INPUTS:
        raise ValueError(f"metric '{name}': over={over!r}; valid: {', '.join(METRIC_INPUTS)}.")

    def deco(fn: Callable) -> Callable:
        _METRICS[name] = Metric(name, fn, aggregation, higher_is_better, kind, over, ideal)
        return fn

    return deco


def load_plugins(config_dirs: Iterable[Path] = ()) -> None:
    """Import the built-in parts, installed entry points and ``<config dir>/plugins/*.py`` (once each)."""
    for package in BUILTIN_MODULES:
        if package not in _loaded:
            _import_package(package)
            _loaded.add(package)
    if "entry_points" not in _loaded:
        _loaded.add("entry_points")
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()
    for d in config_dirs:
        for f in sorted((Path(d) / "plugins").glob("*.py")):
            key = str(f.resolve())
            if key in _loaded:
                continue
            _loaded.add(key)
            spec = importlib.util.spec_from_file_location(f"fewshot_eval_user_plugins.{f.stem}", f)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:  # noqa: BLE001 - a user file: say which one
                _loaded.discard(key)  # not loaded: the next lookup says why again
                sys.modules.pop(spec.name, None)
                moved = MOVED_MODULES.get(getattr(e, "name", None) or "") if isinstance(e, ImportError) else None
                hint = f" (module {e.name} moved in fewshot-eval 0.3: import from {moved})" if moved else ""  # type: ignore[attr-defined]
                raise ConfigError(f"{f}: the plugin module failed to load: {type(e).__name__}: {e}{hint}") from None


def _import_package(name: str) -> None:
    """Import package ``name`` and every module below it, in name order."""
    import pkgutil

    package = importlib.import_module(name)
    for info in sorted(pkgutil.walk_packages(package.__path__, f"{name}."), key=lambda m: m.name):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)


def _lookup(table: dict[str, Any], kind: str, name: str, config_dirs: Iterable[Path]) -> Any:
    load_plugins(config_dirs)
    if name not in table:
        raise ConfigError(f"{kind}: unknown {kind} '{name}'. Valid: {', '.join(sorted(table))} "
                          f"(register your own: fewshot_eval.evaluate.registry.register_{kind}).")
    return table[name]


def predictor_class(name: str, config_dirs: Iterable[Path] = ()) -> Any:
    """The class registered as ``name``; an unknown name lists the registered ones."""
    return _lookup(_PREDICTORS, "predictor", name, config_dirs)


def predictor_capability(name: Any, capability: str, config_dirs: Iterable[Path] = ()) -> Any:
    """The class attribute ``capability`` of the predictor registered as ``name`` (``loads_hf_weights``,
    ``needs_train_labels``, ... see :class:`~fewshot_eval.evaluate.backends.predictor.Predictor`);
    None when ``name`` is unset or not a registered predictor (the model check reports that)."""
    if not name:
        return None
    try:
        cls = predictor_class(str(name), config_dirs)
    except ConfigError:
        return None
    return getattr(cls, capability)


def predictors_with(capability: str) -> list[str]:
    """The registered predictors whose class attribute ``capability`` is true, by name (for messages)."""
    return [n for n in predictor_names() if getattr(_PREDICTORS[n], capability)]


def metric(name: str, config_dirs: Iterable[Path] = ()) -> Metric:
    """The metric registered as ``name``; an unknown name lists the registered ones."""
    return _lookup(_METRICS, "metric", name, config_dirs)


def predictor_names() -> list[str]:
    load_plugins()
    return sorted(_PREDICTORS)


def metric_names() -> list[str]:
    load_plugins()
    return sorted(_METRICS)

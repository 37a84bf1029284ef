"""Which way a metric is better, for comparisons in reports.

The registry's :class:`~fewshot_eval.evaluate.registry.Metric` declares it (``higher_is_better``,
``ideal``); ``<name>_raw`` (uncalibrated) follows ``<name>``. Metrics of lm-eval catalog tasks
(``lm_eval:<task>``) that are not registered here take lm-eval's own declaration (its
``HIGHER_IS_BETTER_REGISTRY``: perplexities, bits per byte, ter, brier_score lower; acc, acc_norm ...
higher); names neither knows are higher-is-better unless they name a perplexity or a loss.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional

from fewshot_eval.config import ConfigError

HIGHER, LOWER, IDEAL = "higher", "lower", "ideal"
# lm-eval metric names (not registered here) whose lower values are better
LOWER_NAMES = ("perplexity", "ppl", "bits_per_byte", "ter", "loss")


def base_name(metric: str) -> str:
    """The metric a stored name reports: ``<name>_raw`` (uncalibrated) -> ``<name>``."""
    return metric[: -len("_raw")] if metric.endswith("_raw") else metric


def registered(metric: str) -> Optional[Any]:
    """The registry's :class:`~fewshot_eval.evaluate.registry.Metric` of a stored metric name
    (``<name>_raw`` -> ``<name>``); None for a name not registered here (lm-eval's own)."""
    from fewshot_eval.evaluate import registry

    name = base_name(metric)
    try:
        return registry.metric(name)
    except ConfigError:
        return None


def direction(metric: str) -> tuple[str, Optional[float]]:
    """(``higher`` | ``lower`` | ``ideal``, the ideal value or None) of a metric name as stored in results."""
    name = base_name(metric)
    m = registered(metric)
    if m is not None:
        ideal = getattr(m, "ideal", None)
        if ideal is not None:
            return IDEAL, float(ideal)
        return (HIGHER if m.higher_is_better else LOWER), None
    theirs = _lm_eval_higher_is_better().get(name)
    if theirs is not None:
        return (HIGHER if theirs else LOWER), None
    if any(part in name for part in LOWER_NAMES):
        return LOWER, None
    return HIGHER, None


@lru_cache(maxsize=1)
def _lm_eval_higher_is_better() -> dict[str, bool]:
    """lm-eval's metric directions ({} when lm_eval cannot be imported)."""
    try:
        import lm_eval.api.metrics  # noqa: F401  (registers them)
        from lm_eval.api.registry import HIGHER_IS_BETTER_REGISTRY
    except Exception:  # noqa: BLE001 - an optional source of defaults
        return {}
    return {str(k): bool(v) for k, v in HIGHER_IS_BETTER_REGISTRY.items()}


def goodness(metric: str, value: float) -> float:
    """A number that grows as ``value`` gets better: the value, its negation, or minus its distance to the ideal."""
    way, ideal = direction(metric)
    if way == LOWER:
        return -value
    if way == IDEAL:
        return -abs(value - float(ideal))  # type: ignore[arg-type]
    return value


def better(metric: str, a: float, ref: float) -> Optional[bool]:
    """Whether ``a`` is better than ``ref`` for ``metric`` (None when equally good)."""
    ga, gr = goodness(metric, a), goodness(metric, ref)
    return None if ga == gr else ga > gr


def describe(metric: str) -> str:
    """'lower is better', 'higher is better' or '50 is ideal'."""
    way, ideal = direction(metric)
    return f"{ideal:g} is ideal" if way == IDEAL else f"{way} is better"


def ranked_as_percent(metric: str, result: str) -> bool:
    """Whether a preferred metric may be averaged with other tasks' ones (the '(all)' average): a
    higher-is-better score of a fewshot-eval task (0-100); perplexities, ideal-50 scores and lm-eval
    catalog results (their own scales, often 0-1) are averaged only with the same metric."""
    return direction(metric)[0] == HIGHER and not str(result).startswith("lm_eval:")

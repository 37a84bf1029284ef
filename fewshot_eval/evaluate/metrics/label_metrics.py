"""Per-trial metrics (×100), registered by name: ``accuracy`` and ``macro_f1``.

Macro-F1 averages the per-class F1 over the classes that occur as gold or prediction
(scikit-learn's default); a class never predicted and never gold does not count.
A new metric is one function here (or in a plugin) with ``@register_metric``; a task
definition names the metrics it reports (``metrics:``, default accuracy and macro_f1). Row
metrics live in ``shapes`` and ``perplexity``, generation metrics in ``text_metrics``
(the three flavours: see ``registry``).
"""

from __future__ import annotations

from typing import Any, Sequence

from fewshot_eval.evaluate.registry import Scored, metric, register_metric
from fewshot_eval.evaluate.tasks.shapes import is_correct, uncalibrated_rows

DEFAULT_METRICS = ("accuracy", "macro_f1")


@register_metric("accuracy")
def accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    if not gold:
        return 0.0
    return 100.0 * sum(is_correct(p, g) for g, p in zip(gold, pred)) / len(gold)  # a list: any of several answers


@register_metric("macro_f1")
def macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    classes = sorted(set(gold) | set(pred))
    if not classes:
        return 0.0
    f1s = []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return 100.0 * sum(f1s) / len(f1s)


def compute_metrics(gold: Sequence[Any], pred: Sequence[Any], raw_pred: Sequence[Any] | None = None,
                    names: Sequence[str] = DEFAULT_METRICS, rows: Sequence[dict] | None = None) -> dict[str, Any]:
    """Each metric of ``names`` (final predictions) and ``n_examples``; with calibration also
    ``<name>_raw`` of the uncalibrated predictions. For generation tasks ``gold`` holds each
    example's references and ``pred`` the outputs. Metrics registered ``over="rows"`` read
    ``rows`` (the prediction rows); one that returns None (not applicable, e.g. a perplexity
    of a baseline) is left out. A metric returning :class:`Scored` adds ``<name>_signature``
    (a string: how it was computed)."""
    out: dict[str, Any] = {}

    def value(name: str, raw: bool) -> Any:
        m = metric(name)
        if m.over == "rows":
            return m.fn(uncalibrated_rows(rows or []) if raw else (rows or []))
        return m.fn(gold, raw_pred if raw else pred)

    for name in names:
        _put(out, name, value(name, False))
    out["n_examples"] = len(gold)
    if raw_pred is not None:
        for name in names:
            _put(out, f"{name}_raw", value(name, True))
    return out


def _put(out: dict[str, Any], key: str, value: "float | Scored | None") -> None:
    if value is None:  # not applicable: left out
        return
    if isinstance(value, Scored):
        out[key] = float(value.value)
        if value.signature:
            out[f"{key}_signature"] = value.signature
    else:
        out[key] = value

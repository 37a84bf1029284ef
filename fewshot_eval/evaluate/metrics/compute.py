"""``compute_metrics``: the metric values of one sub-result, by registered name.

It dispatches on how a metric was registered (:func:`fewshot_eval.evaluate.registry.register_metric`):
``over="labels"`` metrics get the gold labels (generation: the reference lists) and the
predictions (outputs), ``over="rows"`` metrics the prediction rows. With calibration, each
metric is computed a second time over the uncalibrated predictions as ``<name>_raw``.
"""

from __future__ import annotations

from typing import Any, Sequence

from fewshot_eval.evaluate.metrics.label_metrics import DEFAULT_METRICS
from fewshot_eval.evaluate.metrics.prediction_rows import uncalibrated_rows
from fewshot_eval.evaluate.registry import Scored, metric


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

"""Metrics of the task shapes with several answers or grouped sub-problems (×100), over prediction rows.

* ``all_f1`` (``multiple_answers: true``): several correct answers, all wanted -- per example, F1
  of the top-``|gold|`` candidates against the gold set.
* ``group_exact_match`` and ``f1a`` (``group_field`` + ``positive_label``, MultiRC's ``em`` and
  ``f1a``): the share of groups whose rows are all right; F1 of the positive label over all rows.

The shapes themselves (keys, rows) are :mod:`fewshot_eval.evaluate.tasks.shapes`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from fewshot_eval.evaluate.metrics.prediction_rows import final_score
from fewshot_eval.evaluate.registry import register_metric


def _final_scores(row: dict[str, Any]) -> list[float]:
    return [final_score(c) for c in row["candidates"]]


@register_metric("all_f1", over="rows")
def all_f1(rows: Sequence[dict[str, Any]]) -> Optional[float]:
    """Several correct answers, all wanted: per example, F1 of the top-``|gold|`` candidates
    (by final score; ties to the first) against the gold set; mean over examples."""
    if not rows:
        return 0.0
    total = 0.0
    for r in rows:
        gold = set(r["gold"] if isinstance(r["gold"], list) else [r["gold"]])
        scores = _final_scores(r)
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        picked = {r["candidates"][i]["label"] for i in order[: len(gold)]}
        total += 2 * len(picked & gold) / (len(picked) + len(gold))
    return 100.0 * total / len(rows)


@register_metric("group_exact_match", over="rows")
def group_exact_match(rows: Sequence[dict[str, Any]]) -> Optional[float]:
    """Grouped sub-problems (MultiRC ``em``): the share of groups whose rows are all correct."""
    groups: dict[Any, bool] = {}
    for r in rows:
        key = r.get("group", r.get("id"))
        groups[key] = groups.get(key, True) and bool(r["correct"])
    return 100.0 * sum(groups.values()) / len(groups) if groups else 0.0


@register_metric("f1a", over="rows")
def f1a(rows: Sequence[dict[str, Any]]) -> Optional[float]:
    """Grouped sub-problems (MultiRC ``f1a``): F1 of the positive label over all rows (answer options)."""
    tp = fp = fn = 0
    for r in rows:
        pos = r.get("positive")
        if pos is None:
            return None
        g, p = r["gold"] == pos, r["pred"] == pos
        tp += g and p
        fp += p and not g
        fn += g and not p
    return 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0

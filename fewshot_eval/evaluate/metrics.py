"""Per-trial metrics (both ×100): accuracy and macro-F1.

Macro-F1 averages the per-class F1 over the classes that occur as gold or prediction
(scikit-learn's default); a class never predicted and never gold does not count.
"""

from __future__ import annotations

from typing import Sequence


def accuracy(gold: Sequence[str], pred: Sequence[str]) -> float:
    if not gold:
        return 0.0
    return 100.0 * sum(g == p for g, p in zip(gold, pred)) / len(gold)


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


def compute_metrics(gold: Sequence[str], pred: Sequence[str], raw_pred: Sequence[str] | None = None) -> dict[str, float]:
    """``accuracy``, ``macro_f1`` (final predictions), ``n_examples``; with calibration also
    ``accuracy_raw``/``macro_f1_raw`` of the uncalibrated predictions."""
    out = {"accuracy": accuracy(gold, pred), "macro_f1": macro_f1(gold, pred), "n_examples": len(gold)}
    if raw_pred is not None:
        out["accuracy_raw"] = accuracy(gold, raw_pred)
        out["macro_f1_raw"] = macro_f1(gold, raw_pred)
    return out

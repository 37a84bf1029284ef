"""Per-trial metrics (×100), registered by name: ``accuracy`` and ``macro_f1``.

Macro-F1 averages the per-class F1 over the classes that occur as gold or prediction
(scikit-learn's default); a class never predicted and never gold does not count.
A task definition names the metrics it reports (``metrics:``, default accuracy and macro_f1).
Every built-in metric lives in this package (``evaluate/metrics/``): row metrics in
``shape_metrics``, ``perplexity_metrics`` and ``bias_metrics``, generation metrics in
``text_metrics`` (the three flavours: see ``registry``); :mod:`~fewshot_eval.evaluate.metrics.compute`
computes them for a sub-result.
"""

from __future__ import annotations

from typing import Sequence

from fewshot_eval.evaluate.metrics.prediction_rows import is_correct
from fewshot_eval.evaluate.registry import register_metric

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

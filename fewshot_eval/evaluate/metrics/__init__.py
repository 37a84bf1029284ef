"""Metrics, each a function registered by name (:func:`fewshot_eval.evaluate.registry.register_metric`).

Every built-in metric lives in a module of this package, and importing the package imports
every module in it, which registers their metrics: a new metric is one decorated function in
a new or existing module here, with no list to edit (see ``docs/extending.md``)::

    label_metrics        accuracy, macro_f1 (over gold and predicted labels)
    text_metrics         exact_match, f1, bleu, chrf, ... (generated text)
    shape_metrics        all_f1, group_exact_match, f1a (several answers, grouped sub-problems)
    perplexity_metrics   word_perplexity, byte_perplexity, bits_per_byte, gold_perplexity
    bias_metrics         pct_stereotype, lm_score, stereotype_score, icat

Beside them: :mod:`~fewshot_eval.evaluate.metrics.compute` (the values of a sub-result's
metrics) and :mod:`~fewshot_eval.evaluate.metrics.prediction_rows` (reading prediction rows).
Metric modules import no task, backend or evaluator module (they see rows and labels only)
and nothing heavy at module level (lm-eval, sacrebleu: inside the functions).
"""

from __future__ import annotations

import importlib
import pkgutil


def _import_all() -> None:
    """Import every module of this package (its metrics register themselves), in name order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_all()

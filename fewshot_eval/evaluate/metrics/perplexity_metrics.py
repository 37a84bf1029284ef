"""Perplexity metrics (lower is better), over prediction rows.

Of ``kind: perplexity`` tasks (:mod:`~fewshot_eval.evaluate.tasks.perplexity_task`: each row one
document with its rolling log-likelihood, words and bytes): lm-eval's corpus-level
aggregations, through its own functions::

    word_perplexity = exp(-sum(loglikelihood) / sum(words))      # lm_eval weighted_perplexity
    byte_perplexity = exp(-sum(loglikelihood) / sum(bytes))
    bits_per_byte   = -sum(loglikelihood) / sum(bytes) / ln 2    # lm_eval bits_per_byte

Of ranking tasks: ``gold_perplexity``, exp of minus the mean log-prob per token of the correct
candidates' continuations, over all examples' gold tokens (not reported for baselines).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

from fewshot_eval.evaluate.registry import register_metric


def _register_corpus_metric(name: str, aggregation: str, unit: str, doc: str) -> Callable[..., Optional[float]]:
    """Register ``name``: lm-eval's ``lm_eval.api.metrics.<aggregation>`` over the rows'
    (loglikelihood, ``unit``) pairs; None when a row has no log-likelihood (a baseline)."""

    def fn(rows: Sequence[dict[str, Any]]) -> Optional[float]:
        if not rows or any("loglikelihood" not in r for r in rows):
            return None
        from lm_eval.api import metrics as lm_metrics  # lazy: heavy

        return getattr(lm_metrics, aggregation)([(float(r["loglikelihood"]), int(r[unit])) for r in rows])

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return register_metric(name, over="rows", higher_is_better=False)(fn)


word_perplexity = _register_corpus_metric("word_perplexity", "weighted_perplexity", "n_words",
    "exp(-total log-likelihood / total words) of a perplexity task (lm-eval's ``word_perplexity``).")
byte_perplexity = _register_corpus_metric("byte_perplexity", "weighted_perplexity", "n_bytes",
    "exp(-total log-likelihood / total bytes) (lm-eval's ``byte_perplexity``).")
bits_per_byte = _register_corpus_metric("bits_per_byte", "bits_per_byte", "n_bytes",
    "-total log-likelihood / total bytes / ln 2 (lm-eval's ``bits_per_byte``).")


@register_metric("gold_perplexity", over="rows", higher_is_better=False)
def gold_perplexity(rows: Sequence[dict[str, Any]]) -> Optional[float]:
    """Ranking tasks: exp(-mean log-prob per token) of the correct candidates' continuations,
    pooled over all examples (every gold candidate of a row with several answers)."""
    total, n = 0.0, 0
    for r in rows:
        gold = r["gold"] if isinstance(r.get("gold"), list) else [r.get("gold")]
        for c in r.get("candidates") or []:
            if c["label"] in gold:
                if c.get("logprobs") is None:
                    return None  # a baseline: no log-probs
                total += float(sum(c["logprobs"]))
                n += len(c["logprobs"])
    return math.exp(-total / n) if n else None

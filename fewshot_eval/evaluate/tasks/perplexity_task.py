"""Perplexity tasks (task definition ``kind: perplexity``): documents -> rolling log-likelihoods.

A perplexity task's template renders each data row into one document (``document:``, Jinja2);
the predictor's ``loglikelihood_rolling`` scores it whole with non-overlapping windows of the
model's context (lm-evaluation-harness's ``loglikelihood_rolling``). Per document the row
stores its log-likelihood, tokens, words and bytes (words and bytes counted as lm-eval's
``PerplexityTask``), which the corpus-level metrics read
(:mod:`~fewshot_eval.evaluate.metrics.perplexity_metrics`: ``word_perplexity``,
``byte_perplexity``, ``bits_per_byte``). Demonstrations, scoring modes and calibration do not apply.

Prediction row: ``id, gold: "", pred: "", document, loglikelihood, n_tokens, n_words, n_bytes``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from fewshot_eval.evaluate.backends.predictor import Predictor


def count_words_bytes(text: str) -> tuple[int, int]:
    """(words, bytes) of a document exactly as lm-evaluation-harness counts them for perplexity."""
    from lm_eval.api.task import PerplexityTask  # lazy: heavy

    return PerplexityTask.count_words(text), PerplexityTask.count_bytes(text)


def score_documents(predictor: Predictor, task: Any, template: str, lang: Optional[str], docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prediction rows of one perplexity sub-result: each document's rolling log-likelihood."""
    tmpl = task.templates[template]
    texts = [tmpl.render(d, lang) for d in docs]
    results = predictor.loglikelihood_rolling(texts) if texts else []
    rows = []
    for doc, text, res in zip(docs, texts, results):
        words, nbytes = count_words_bytes(text)
        rows.append({"id": doc["_id"], "gold": "", "pred": "", "document": text, "loglikelihood": res.total,
                     "n_tokens": len(res.logprobs), "n_words": words, "n_bytes": nbytes})
    return rows

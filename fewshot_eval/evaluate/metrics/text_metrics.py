"""Metrics of generated text (task ``kind: generate``), ×100, registered by name.

Each gets, per example, the list of reference texts and the generated output (surrounding
whitespace is stripped from both before scoring: the model writes ``" Paris"`` after ``"A:"``),
except ``exact_match_lm_eval``, which compares them raw.

* ``exact_match`` -- SQuAD's: the normalised output equals a normalised reference
  (lower-cased, punctuation and the articles a/an/the removed, whitespace collapsed);
* ``exact_match_strict`` -- the stripped output equals a stripped reference;
* ``exact_match_lm_eval`` -- lm-evaluation-harness's ``exact_match`` of a generation task: the raw
  output (nothing stripped) equals a reference as lm-eval builds its target -- the whitespace the
  prompt leaves to the model (the row's ``target_delimiter``: ``" "`` after ``"Answer:"``) + the
  reference, as lm-eval's ``doc_to_target: " {{answer}}"`` with ``target_delimiter: ""``;
* ``f1`` -- SQuAD's token F1 of the normalised texts, the best over the references, averaged;
* ``bleu``, ``chrf`` -- corpus-level sacrebleu (defaults: BLEU 13a tokenisation with exp
  smoothing; chrF2), several references allowed; sacrebleu's signature is stored beside the
  value as ``<metric>_signature``.

A new one is a function here with ``@register_metric(name, kind="generate")``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, Optional, Sequence

from fewshot_eval.evaluate.registry import Scored, register_metric

DEFAULT_GENERATION_METRICS = ("exact_match", "f1")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(output: str, reference: str) -> float:
    """SQuAD's token F1 (0..1) of two texts after :func:`normalize_answer`; two empty texts score 1."""
    out, ref = normalize_answer(output).split(), normalize_answer(reference).split()
    if not out or not ref:
        return float(out == ref)
    same = sum((Counter(out) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(out), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def _mean(values: list[float]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0


@register_metric("exact_match", kind="generate")
def exact_match(references: Sequence[Sequence[str]], outputs: Sequence[str]) -> float:
    return _mean([float(any(normalize_answer(o) == normalize_answer(r) for r in refs)) for refs, o in zip(references, outputs)])


@register_metric("exact_match_strict", kind="generate")
def exact_match_strict(references: Sequence[Sequence[str]], outputs: Sequence[str]) -> float:
    return _mean([float(any(o.strip() == r.strip() for r in refs)) for refs, o in zip(references, outputs)])


@register_metric("exact_match_lm_eval", kind="generate", over="rows")
def exact_match_lm_eval(rows: Sequence[dict[str, Any]]) -> Optional[float]:
    """lm-eval's generation exact match: ``output == target_delimiter + reference`` for any reference, raw.
    None (left out) for rows written before rows recorded ``target_delimiter``."""
    if any("target_delimiter" not in r for r in rows):
        return None
    return _mean([float(any(r["output"] == r["target_delimiter"] + ref for ref in r["references"])) for r in rows])


@register_metric("f1", kind="generate")
def f1(references: Sequence[Sequence[str]], outputs: Sequence[str]) -> float:
    return _mean([max(token_f1(o, r) for r in refs) for refs, o in zip(references, outputs)])


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[Optional[str]]]:
    """sacrebleu's layout: one stream per reference position; examples with fewer references get None."""
    n = max((len(refs) for refs in references), default=1)
    return [[refs[i].strip() if i < len(refs) else None for refs in references] for i in range(n)]


def _sacrebleu(metric: Any, references: Sequence[Sequence[str]], outputs: Sequence[str]) -> Scored:
    if not outputs:
        return Scored(0.0, str(metric.get_signature()))
    score = metric.corpus_score([o.strip() for o in outputs], reference_streams(references))
    return Scored(float(score.score), str(metric.get_signature()))


@register_metric("bleu", kind="generate")
def bleu(references: Sequence[Sequence[str]], outputs: Sequence[str]) -> Scored:
    from sacrebleu.metrics import BLEU

    return _sacrebleu(BLEU(), references, outputs)


@register_metric("chrf", kind="generate")
def chrf(references: Sequence[Sequence[str]], outputs: Sequence[str]) -> Scored:
    from sacrebleu.metrics import CHRF

    return _sacrebleu(CHRF(), references, outputs)

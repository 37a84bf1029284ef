"""Baseline predictors: ``random`` and ``majority``. No model, no GPU.

* ``random``: a uniformly random candidate per example. Unlike the original (unseeded), the
  draw is seeded by ``seed + trial``, the task and the example id, so reruns and other
  machines give the same predictions (``random.Random`` with a string seed hashes it with
  SHA-512, independent of ``PYTHONHASHSEED``).
* ``majority``: the most frequent gold label of the task's TRAIN split (the demonstration
  split, in the demonstration language); ties go to the label listed first in the task
  definition. The original used the evaluated set's own labels, which leaks the answers.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Sequence

from fewshot_eval.evaluate.backends.predictor import Loglik, Predictor, Request
from fewshot_eval.evaluate.registry import register_predictor


@register_predictor("random")
class RandomPredictor(Predictor):
    uses_gpus = False

    def describe(self) -> dict:
        return {"predictor": "random"}

    def __init__(self) -> None:
        self._task, self._seed = "", 0

    def begin(self, task: str, train_labels: Sequence[str], seed: int) -> None:
        self._task, self._seed = task, seed

    def loglikelihood(self, requests: Sequence[Request]) -> list[Loglik]:
        # Each candidate gets an independent U(0,1) score keyed by (seed, task, example, label):
        # the argmax over an example's candidates is then uniform over the candidates.
        out = []
        for r in requests:
            u = random.Random(f"{self._seed}|{self._task}|{r.doc_id}|{r.label}").random()
            out.append(Loglik([math.log(max(u, 1e-300))]))
        return out


@register_predictor("majority")
class MajorityPredictor(Predictor):
    uses_gpus = False
    needs_train_labels = True  # refused where the train labels say nothing (catalog tasks, minimal pairs)

    def describe(self) -> dict:
        return {"predictor": "majority"}

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def begin(self, task: str, train_labels: Sequence[str], seed: int) -> None:
        self._counts = Counter(train_labels)

    def loglikelihood(self, requests: Sequence[Request]) -> list[Loglik]:
        # Score = train frequency of the candidate's label (as a log-probability); ties are
        # broken by the runner's argmax, which picks the first candidate in label order.
        total = sum(self._counts.values()) or 1
        return [Loglik([math.log((self._counts.get(r.label, 0) + 1e-9) / total)]) for r in requests]

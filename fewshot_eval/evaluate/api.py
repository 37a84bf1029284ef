"""The one small interface every predictor implements (lm-evaluation-harness style).

A :class:`Request` is one ``(context, continuation)`` pair; :meth:`Predictor.loglikelihood`
scores a batch of them and returns, per request, the log-probability of each continuation
token. Conventions, as in lm-evaluation-harness's HF model:

* whitespace at the end of the context belongs to the continuation
  (``("Answer: ", "Yes")`` is scored as ``("Answer:", " Yes")``, see :func:`split_whitespace`);
* the continuation tokens are those of ``encode(context + continuation)`` after the first
  ``len(encode(context))`` tokens;
* an empty context is replaced by the end-of-text token.

Baselines (``random``, ``majority``) answer with one pseudo log-probability per request
(``Loglik.tokens`` empty); scoring modes and calibration apply only to real LMs
(``Predictor.is_lm``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence


@dataclass(frozen=True)
class Request:
    context: str
    continuation: str
    doc_id: str = ""  # the example, for seeded baselines
    label: str = ""  # the candidate's label, for baselines


@dataclass
class Loglik:
    logprobs: list[float]  # one per continuation token
    tokens: list[int] = field(default_factory=list)  # continuation token ids (empty for baselines)
    greedy: Optional[bool] = None  # every continuation token is the argmax (lm-eval's is_greedy)

    @property
    def total(self) -> float:
        return float(sum(self.logprobs))


def split_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing whitespace of the context to the continuation (lm-eval's ``_encode_pair``)."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


class Predictor(ABC):
    """Scores continuations. One instance per evaluator (models load once)."""

    is_lm: bool = False
    max_length: Optional[int] = None  # context length in tokens; None = unlimited (baselines)
    name: str = ""  # set by ``registry.register_predictor``
    operations: frozenset = frozenset()  # request operations it supports, set by ``register_predictor``

    uses_gpus: bool = True  # False: its SLURM jobs ask for no GPU whatever the setting's resources say

    @classmethod
    def check_settings(cls, model: dict, params: dict) -> None:
        """Planning-time check of what ``from_settings`` will need (no model loaded); raises ConfigError."""

    @classmethod
    def from_settings(cls, model: dict, params: dict) -> "Predictor":
        """Build it for one job from the model setting and the job's eval params (loads a model once)."""
        return cls()

    def begin(self, task: str, train_labels: Sequence[str], seed: int) -> None:
        """Called before each task/language is scored: the train split's gold labels and the trial's seed."""

    @abstractmethod
    def loglikelihood(self, requests: Sequence[Request]) -> list[Loglik]:
        """Per-token log-probabilities of each request's continuation given its context."""

    def num_tokens(self, text: str) -> int:
        """Tokens of ``text`` (used to keep as many demonstrations as fit ``max_length``)."""
        return 0

    def describe(self) -> dict:
        return {"predictor": type(self).__name__}


@dataclass
class TrialResult:
    """What one trial of one job produced.

    ``metrics`` and ``predictions`` are keyed by sub-result id ``"<task>.<template>[.<lang>]"``
    (one per task x template x language of the task setting).
    """

    metrics: dict[str, dict[str, Any]]
    predictions: dict[str, list[dict[str, Any]]]
    info: dict[str, Any] = field(default_factory=dict)


class Evaluator(Protocol):
    def run_trial(self, tasks: Sequence[str], params: dict[str, Any], nshot: int, trial: int) -> TrialResult: ...

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
(``Predictor.is_lm``). What a predictor needs and can do are class attributes of
:class:`Predictor` (``is_lm``, ``uses_gpus``, ``loads_hf_weights``, ``needs_train_labels``,
``operations``, ``reports_batches``, ``data_parallel``); the predictors that load a HuggingFace checkpoint share
:class:`~fewshot_eval.evaluate.backends.hf_base.HFPredictor` (tokenisation, weights checks).

A :class:`GenerationRequest` is one context with lm-eval's generation kwargs (``until`` stop
strings, ``max_gen_toks``, ``do_sample``/``temperature``); :meth:`Predictor.generate_until`
returns, per request, the generated text cut before the first stop string -- lm-evaluation-harness's
``generate_until``. Only predictors registered with the ``generate_until`` operation implement it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence


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
    summed: Optional[float] = None  # the total as the backend accumulated it (rolling: per-window float32 sums, as lm-eval)

    @property
    def total(self) -> float:
        return float(sum(self.logprobs)) if self.summed is None else self.summed


@dataclass(frozen=True)
class GenerationRequest:
    """Generate a continuation of ``context`` (lm-evaluation-harness's ``generate_until`` request)."""

    context: str
    until: tuple[str, ...] = ()  # stop strings: the output is cut before the first one
    max_gen_toks: int = 256  # new tokens at most
    do_sample: bool = False  # False: greedy decoding
    temperature: float = 1.0  # sampling only
    seed: int = 0  # sampling only: seeds the generator (per group of requests with the same kwargs)
    doc_id: str = ""  # the example

    def gen_kwargs(self) -> dict[str, Any]:
        """The request's generation kwargs as lm-eval writes them (``Instance.args[1]``)."""
        kw: dict[str, Any] = {"until": list(self.until), "max_gen_toks": self.max_gen_toks, "do_sample": self.do_sample}
        if self.do_sample:
            kw["temperature"] = self.temperature
        return kw


def split_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing whitespace of the context to the continuation (lm-eval's ``_encode_pair``)."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


class Predictor(ABC):
    """Scores continuations. One instance per evaluator (models load once).

    What a predictor needs and can do are class attributes (its capabilities), read by the rest
    of the project through ``registry.predictor_class(name).<attribute>``; no other module tests
    a predictor's name."""

    # ---- capabilities (class attributes; a subclass overrides what differs)
    name: str = ""  # set by ``registry.register_predictor``
    operations: frozenset = frozenset()  # request operations it supports, set by ``register_predictor``
    is_lm: bool = False  # a language model: scoring modes, calibration, the resume cache and chat apply
    uses_gpus: bool = True  # False: its SLURM jobs ask for no GPU whatever the setting's resources say
    # Loads a HuggingFace checkpoint (``weights``): weights fingerprint in the result identity,
    # planning checks of the weights dir, chat template and ``hf_overrides``, checkpoint sweeps, the
    # hub-cache note on plan rows (see :class:`~fewshot_eval.evaluate.backends.hf_base.HFPredictor`).
    loads_hf_weights: bool = False
    # Answers from the train split's gold labels (``begin``'s ``train_labels``): refused on tasks
    # that have none to give (lm-eval catalog tasks) or whose gold is always the same (minimal pairs).
    needs_train_labels: bool = False
    # Operations whose calls report each finished batch to ``on_batch(indices into the call's
    # requests, their results)`` when a caller set it (the resume cache, ``evaluate.resume``, which
    # otherwise calls the operation once per ``batch_size`` requests to store them as they come).
    reports_batches: frozenset = frozenset()
    # Takes ``parallel.data_parallel_size > 1`` (several copies of the model in one job); planning refuses
    # it for a predictor without this capability.
    data_parallel: bool = False

    max_length: Optional[int] = None  # context length in tokens; None = unlimited (baselines)
    on_batch: Optional[Callable[[list[int], list[Any]], None]] = None

    @classmethod
    def check_settings(cls, model: dict, params: dict) -> None:
        """Planning-time check of what ``from_settings`` will need (no model loaded); raises ConfigError."""

    @classmethod
    def check_files(cls, model_key: str, model: dict) -> None:
        """Planning-only checks of the setting against local files (never a download): run after the
        model check's own (``model_checks.check_model``); raises ConfigError."""

    @classmethod
    def node_gpus(cls, model: dict, asked: int) -> int:
        """GPUs per node a SLURM job of this setting asks for, given its ``resources.gpus_per_node``
        (``asked``): none for a predictor that uses none (``uses_gpus``); a subclass adds what its
        parallelism needs (e.g. one GPU per data-parallel copy)."""
        return asked if cls.uses_gpus else 0

    @classmethod
    def from_settings(cls, model: dict, params: dict) -> "Predictor":
        """Build it for one job from the model setting and the job's eval params (loads a model once)."""
        return cls()

    def begin(self, task: str, train_labels: Sequence[str], seed: int) -> None:
        """Called before each task/language is scored: the train split's gold labels and the trial's seed."""

    @abstractmethod
    def loglikelihood(self, requests: Sequence[Request]) -> list[Loglik]:
        """Per-token log-probabilities of each request's continuation given its context."""

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[Loglik]:
        """Per-token log-probabilities of each whole text (document-level, lm-eval's
        ``loglikelihood_rolling``: non-overlapping windows of the model's context, the first
        token conditioned on the prefix token). Only predictors registered with the
        ``loglikelihood_rolling`` operation implement it."""
        raise NotImplementedError(f"predictor '{self.name or type(self).__name__}' does not support loglikelihood_rolling.")

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """Per request, the text generated after its context, cut before the first stop string.
        Only predictors registered with the ``generate_until`` operation implement it."""
        raise NotImplementedError(f"predictor '{self.name or type(self).__name__}' does not generate text (operations: {', '.join(sorted(self.operations))}).")

    def num_tokens(self, text: str) -> int:
        """Tokens of ``text`` (used to keep as many demonstrations as fit ``max_length``)."""
        return 0

    def describe(self) -> dict:
        return {"predictor": type(self).__name__}

"""Resume inside a trial: scored requests are kept on disk, so a killed job rescores at most one batch.

    evaluator = ResumableEvaluator(FewShotEvaluator(...), result_dir, model, params, weights)
    evaluator.run_trial(...)    # the predictor is wrapped in a CachedPredictor over trial<t>.sqlite

:class:`CachedPredictor` wraps any predictor and is generic over its operations
(``loglikelihood``, ``loglikelihood_rolling``, ``generate_until``): a request already in the
trial's cache (``store.score_cache``) is answered from it; the others go to the real predictor,
and each finished batch is written (one transaction) as soon as it is done:

* a predictor that lists the operation in ``reports_batches`` gets the whole call and reports
  each batch it finishes through ``on_batch`` (``clm`` does, keeping its own batching and the
  key/value cache it shares between batches);
* any other gets the requests in chunks of its ``batch_size`` (sorted, so that neighbours
  share a prefix), one call per chunk.

The key of a request is a digest of everything that changes its score: the predictor
(registered name, weights and their fingerprint, revision, dtype, ``max_length``, device, as
``describe()`` reports them), the state ``begin()`` set (task, seed, train labels: baselines
score with them), the operation, the request's fields and the call's extra arguments.
Values are JSON (floats round-trip exactly), so a resumed trial equals an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from fewshot_eval.evaluate.backends.predictor import Predictor
from fewshot_eval.evaluate.trial_result import TrialResult
from fewshot_eval.store.score_cache import ScoreCache, score_cache_file

log = logging.getLogger("fewshot_eval")

CACHE_FORMAT = 2  # 2: values sealed with a checksum (store.score_cache)


# ---- (de)serialising requests and results -------------------------------------------------------

def to_json(value: Any) -> Any:
    """A JSON-able form of a request or result (dataclasses and tuples tagged, so they come back)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"$dataclass": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return {"$tuple": [to_json(v) for v in value]}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(value: Any) -> Any:
    """Inverse of :func:`to_json`. A dataclass is rebuilt only from a module already imported
    (the predictor's own), never by importing one named in the file."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if "$tuple" in value and len(value) == 1:
            return tuple(from_json(v) for v in value["$tuple"])
        if "$dataclass" in value and set(value) == {"$dataclass", "fields"}:
            module, _, qualname = str(value["$dataclass"]).partition(":")
            obj: Any = sys.modules.get(module)
            for part in qualname.split("."):
                obj = getattr(obj, part, None)
            if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
                raise ValueError(f"score cache: unknown result type {value['$dataclass']!r}")
            return obj(**{k: from_json(v) for k, v in value["fields"].items()})
        return {k: from_json(v) for k, v in value.items()}
    return value


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ---- the predictor wrapper -------------------------------------------------------------------

class CachedPredictor(Predictor):
    """``inner`` with its answers kept in ``store``; everything else is ``inner``'s."""

    def __init__(self, inner: Predictor, store: ScoreCache, namespace: str) -> None:
        self.inner = inner
        self.store = store
        self.namespace = namespace
        self._state = ""
        self.reused = 0  # requests answered from the cache
        self.scored = 0  # distinct requests sent to the predictor

    def __getattr__(self, attr: str) -> Any:  # anything else (tokenizer, batch_size, ...) is the predictor's
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    is_lm = property(lambda self: self.inner.is_lm)  # type: ignore[assignment]
    max_length = property(lambda self: self.inner.max_length)  # type: ignore[assignment]
    name = property(lambda self: self.inner.name)  # type: ignore[assignment]
    operations = property(lambda self: self.inner.operations)  # type: ignore[assignment]

    def begin(self, task: str, train_labels: Sequence[str], seed: int) -> None:
        self._state = _digest([task, list(train_labels), seed])
        self.inner.begin(task, train_labels, seed)

    def num_tokens(self, text: str) -> int:
        return self.inner.num_tokens(text)

    def describe(self) -> dict:
        return self.inner.describe()

    # the operations (registry.OPERATIONS): each is answered through the cache
    def loglikelihood(self, requests: Sequence[Any], *args: Any, **kwargs: Any) -> list[Any]:
        return self.answer("loglikelihood", requests, args, kwargs)

    def loglikelihood_rolling(self, requests: Sequence[Any], *args: Any, **kwargs: Any) -> list[Any]:
        return self.answer("loglikelihood_rolling", requests, args, kwargs)

    def generate_until(self, requests: Sequence[Any], *args: Any, **kwargs: Any) -> list[Any]:
        return self.answer("generate_until", requests, args, kwargs)

    def key(self, operation: str, request: Any, args: Sequence[Any] = (), kwargs: Optional[dict] = None) -> str:
        """The cache key of one request of one call."""
        return _digest([CACHE_FORMAT, self.namespace, self._state, operation, to_json(request), to_json(list(args)), to_json(kwargs or {})])

    def answer(self, operation: str, requests: Sequence[Any], args: Sequence[Any] = (), kwargs: Optional[dict] = None) -> list[Any]:
        """``inner.<operation>(requests, *args, **kwargs)``, from the cache where it can."""
        kwargs = kwargs or {}
        keys = [self.key(operation, r, args, kwargs) for r in requests]
        found: dict[str, Any] = {}
        undecodable: list[str] = []
        for k, v in self.store.get_many(keys).items():
            try:
                found[k] = from_json(json.loads(v))
            except (ValueError, TypeError):  # a row that passed its checksum but does not decode: scored again
                undecodable.append(k)
        if undecodable:
            self.store.drop(undecodable, "do not decode")
        first: dict[str, Any] = {}
        for k, r in zip(keys, requests):
            if k not in found:
                first.setdefault(k, r)
        hits = sum(k in found for k in keys)
        self.reused += hits
        if first:
            if hits:
                log.info("score cache: %d of %d %s requests reused, scoring %d", hits, len(keys), operation, len(first))
            pending_keys = list(first)
            answers = self._forward(operation, [first[k] for k in pending_keys], pending_keys, args, kwargs)
            found.update(zip(pending_keys, answers))
            self.scored += len(pending_keys)
        return [found[k] for k in keys]

    def _forward(self, operation: str, pending: list[Any], keys: list[str], args: Sequence[Any], kwargs: dict) -> list[Any]:
        """Score ``pending`` with the real predictor, committing each finished batch."""
        fn = getattr(self.inner, operation)
        stored: set[int] = set()

        def commit(idx: Iterable[int], results: Sequence[Any]) -> None:
            new = [(i, r) for i, r in zip(idx, results) if i not in stored]
            self.store.put_many([(keys[i], json.dumps(to_json(r))) for i, r in new])
            stored.update(i for i, _ in new)

        if operation in getattr(self.inner, "reports_batches", ()):
            self.inner.on_batch = commit
            try:
                out = list(fn(pending, *args, **kwargs))
            finally:
                self.inner.on_batch = None
            commit(range(len(pending)), out)  # whatever was not reported
            return out
        size = int(getattr(self.inner, "batch_size", 0) or 0) or len(pending)
        order = sorted(range(len(pending)), key=lambda i: json.dumps(to_json(pending[i]), default=str))
        answers: list[Any] = [None] * len(pending)
        for b in range(0, len(order), size):
            idx = order[b : b + size]
            res = list(fn([pending[i] for i in idx], *args, **kwargs))
            commit(idx, res)
            for i, r in zip(idx, res):
                answers[i] = r
        return answers


# ---- the evaluator wrapper ----------------------------------------------------------------------

class ResumableEvaluator:
    """Runs each trial of ``evaluator`` with its predictor wrapped in a :class:`CachedPredictor` over
    ``<result_dir>/score_cache/trial<t>.sqlite``; the trial's ``info["score_cache"]`` says how many
    requests were reused and how many scored."""

    def __init__(self, evaluator: Any, result_dir: Path, model: dict[str, Any], params: dict[str, Any], weights: Optional[str] = None) -> None:
        self.evaluator = evaluator
        self.result_dir = result_dir
        pred = evaluator.predictor
        self.namespace = _digest({
            "model": {k: model.get(k) for k in ("predictor", "weights", "revision")},
            "weights_fingerprint": weights,
            "params": {k: params.get(k) for k in ("predictor", "dtype", "max_length")},
            "predictor": pred.describe(),
        })

    def __getattr__(self, attr: str) -> Any:  # predictor, model ...: the wrapped evaluator's
        if attr == "evaluator":
            raise AttributeError(attr)
        return getattr(self.evaluator, attr)

    def run_trial(self, tasks: Sequence[str], params: dict[str, Any], nshot: int, trial: int) -> TrialResult:
        inner = self.evaluator.predictor
        path = score_cache_file(self.result_dir, trial)
        try:
            store = ScoreCache(path)
        except (sqlite3.Error, OSError) as e:  # the cache only saves time: never fail a job for it
            log.warning("score cache %s unusable (%s): trial %d runs without it", path, e, trial)
            return self.evaluator.run_trial(tasks, params, nshot, trial)
        with store:
            cached = CachedPredictor(inner, store, self.namespace)
            self.evaluator.predictor = cached
            try:
                result = self.evaluator.run_trial(tasks, params, nshot, trial)
            finally:
                self.evaluator.predictor = inner
        result.info["score_cache"] = {"reused": cached.reused, "scored": cached.scored}
        if cached.reused:
            log.info("trial %d: %d requests reused from the score cache of a killed run, %d scored", trial, cached.reused, cached.scored)
        return result

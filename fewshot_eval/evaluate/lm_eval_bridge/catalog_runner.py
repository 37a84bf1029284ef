"""Run catalog tasks (``lm_eval:<name>``) of one trial: lm-eval builds, our predictor scores.

lm-eval does everything but the scoring: its TaskManager builds the tasks, its
``simple_evaluate`` builds the documents, few-shot contexts and requests, applies its filters,
``process_results`` and aggregation (groups included). The requests are scored by this job's
predictor through :class:`PredictorLM`, an ``lm_eval.api.model.LM`` that hands every
``loglikelihood`` request of the trial -- all catalog tasks together -- to
``Predictor.loglikelihood`` in one call (so ``clm`` shares the prefix computation of the
few-shot contexts), and ``loglikelihood_rolling`` / ``generate_until`` requests to the
predictor's methods of those names when it has them (else the planner refuses the task).

Mapping of our grid to lm-eval's arguments:

* ``nshot`` -> ``num_fewshot`` (a task whose own config fixes ``num_fewshot: 0`` stays 0-shot, as in lm-eval);
* trial ``t`` -> ``fewshot_random_seed = seed + t`` (lm-eval's own default is 1234: ``seed=1234`` with
  trial 0 reproduces ``lm_eval --num_fewshot k``); ``random_seed``/``numpy``/``torch`` seeds stay
  lm-eval's defaults;
* ``n_eval_samples`` -> ``limit``; no stderr bootstrap (the spread is over our trials).

Output: per lm-eval task and group, a sub-result ``lm_eval:<name>`` whose metrics are lm-eval's
as it reports them (``acc``, ``acc_norm``, on lm-eval's 0-1 scale; ``<metric>:<filter>`` for filters
other than ``none``); the preferred metric is the task's first metric (``acc``). Predictions rows
are lm-eval's logged samples (doc, arguments, responses, per-doc metrics) plus ``id`` and, for
tasks with ``acc``, ``correct``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from fewshot_eval.evaluate.backends.predictor import Predictor, Request
from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import PREFIX, bare, catalog, lm_eval_version

log = logging.getLogger("fewshot_eval")


def _lm_class() -> type:
    from lm_eval.api.model import LM

    class PredictorLM(LM):
        """Our :class:`~fewshot_eval.evaluate.backends.predictor.Predictor` as an lm-eval model."""

        def __init__(self, predictor: Predictor) -> None:
            super().__init__()
            self.predictor = predictor

        def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            reqs = [Request(str(r.arguments[0]), str(r.arguments[1]), f"{r.task_name}|{r.doc_id}", str(r.idx)) for r in requests]
            out = self.predictor.loglikelihood(reqs) if reqs else []
            return [(ll.total, bool(ll.greedy)) for ll in out]

        def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
            texts = [str(r.arguments[0]) for r in requests]
            return [ll.total for ll in self.predictor.loglikelihood_rolling(texts)]  # type: ignore[attr-defined]

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            # lm-eval's Instance.args = (context, generation kwargs) -> our GenerationRequest
            return [str(x) for x in self.predictor.generate_until([generation_request(*r.arguments[:2]) for r in requests])]  # type: ignore[attr-defined]

    return PredictorLM


def generation_request(context: str, gen_kwargs: Optional[dict] = None) -> Any:
    """Our :class:`GenerationRequest` for lm-eval's ``(context, gen_kwargs)`` (HFLM's defaults:
    256 new tokens, greedy; the end-of-text token always stops)."""
    from fewshot_eval.evaluate.backends.predictor import GenerationRequest

    kw = dict(gen_kwargs or {})
    until = kw.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    do_sample = bool(kw.get("do_sample", False))
    return GenerationRequest(context, tuple(until), int(kw.get("max_gen_toks") or 256), do_sample,
                             float(kw.get("temperature", 1.0) or 1.0) if do_sample else 1.0)


def _metric_name(key: str) -> Optional[str]:
    """``acc,none`` -> ``acc``; ``exact_match,strict-match`` -> ``exact_match:strict-match``; stderr/alias -> None."""
    if "," not in key:
        return None
    metric, _, filt = key.partition(",")
    if metric.endswith("_stderr"):
        return None
    return metric if filt == "none" else f"{metric}:{filt}"


def _jsonable(obj: Any) -> Any:
    from lm_eval.utils import handle_non_serializable

    return json.loads(json.dumps(obj, default=handle_non_serializable, ensure_ascii=False))


def _first_metric(config: dict[str, Any]) -> Optional[str]:
    for key in ("metric_list", "aggregate_metric_list"):
        items = config.get(key) or []
        if items and isinstance(items[0], dict) and items[0].get("metric"):
            return str(items[0]["metric"])
    return None


def run_catalog_tasks(
    predictor: Predictor, names: Sequence[str], params: dict[str, Any], nshot: int, trial: int, search: Optional[Iterable[Path]] = None
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """(metrics, predictions, info) of the catalog tasks ``names`` (``lm_eval:<name>``) for one trial."""
    import lm_eval

    from fewshot_eval.evaluate.lm_eval_bridge.catalog_manager import task_manager

    cat = catalog(search)
    seed = int(params.get("seed") or 0) + int(trial)
    limit = int(params.get("n_eval_samples") or 0) or None
    predictor.begin(",".join(names), [], seed)
    lm = _lm_class()(predictor)
    logging.getLogger("lm_eval").setLevel(max(logging.getLogger("lm_eval").level, logging.WARNING))
    res = lm_eval.simple_evaluate(
        model=lm, tasks=[bare(n) for n in names], num_fewshot=nshot, task_manager=task_manager(cat), limit=limit,
        bootstrap_iters=0, log_samples=True, fewshot_random_seed=seed,
    )
    metrics: dict[str, dict[str, Any]] = {}
    predictions: dict[str, list[dict[str, Any]]] = {}
    preferred: dict[str, str] = {}
    configs = res.get("configs") or {}
    group_cfgs = {g: (c if isinstance(c, dict) else {}) for g, c in (res.get("group_configs") or {}).items()}
    for block in ("results", "groups"):
        for name, values in (res.get(block) or {}).items():
            sid = PREFIX + name
            m = {}
            for key, v in values.items():
                metric = _metric_name(key)
                if metric and isinstance(v, (int, float)) and not isinstance(v, bool):
                    m[metric] = float(v)
            if not m:
                continue
            n = ((res.get("n-samples") or {}).get(name) or {}).get("effective")
            if n:
                m["n_examples"] = int(n)
            metrics.setdefault(sid, {}).update(m)
            first = _first_metric(configs.get(name) or group_cfgs.get(name) or {})
            preferred[sid] = first if first in m else next(k for k in m if k != "n_examples")
    for name, samples in (res.get("samples") or {}).items():
        rows = []
        for s in _jsonable(samples):
            row = {"id": str(s.get("doc_id")), **s}
            if "acc" in s:
                row["correct"] = bool(s["acc"])
            rows.append(row)
        predictions[PREFIX + name] = rows
    if not metrics:
        raise RuntimeError(f"lm-eval returned no metrics for {list(names)}")
    info = {
        "preferred_metric": preferred,
        "lm_eval": {
            "version": lm_eval_version(),
            "num_fewshot": nshot,
            "fewshot_random_seed": seed,
            "limit": limit,
            "n_shot": _jsonable(res.get("n-shot") or {}),
            "versions": _jsonable(res.get("versions") or {}),
        },
    }
    return metrics, predictions, info

"""``FewShotEvaluator``: one trial of (tasks x templates x languages) -> metrics + prediction rows.

Per task and evaluated language the trial's demonstrations are drawn once (seed + trial), so
every template of a trial sees the same demonstrations. All requests of one sub-result
(candidates, calibration variants, unconditional continuations) go to the predictor in one
batch, which lets the LM share every common prefix across them. Unconditional continuations
(``unconditional_prompt`` + candidate) are scored only under ``scoring=unconditional-norm``, once
per distinct candidate text in a job (cached across examples and trials).

Prediction row (one per evaluated example; JSON-serialisable)::

    id, gold, pred, correct, [pred_raw]        # pred_raw: uncalibrated prediction (calibrator set)
    prompt                                    # context: description + demonstrations + test prefix
    n_demos                                   # demonstrations kept (fewer than sampled if max_length hit)
    n_shared_prefix, n_shared_suffix          # tokens all candidates' continuations share at start / end
    candidates: [{label, text,                # text: continuation = verbalisation + suffix
                  n_tokens, logprobs,         # per-token log-probs of the continuation (null: baseline)
                  uncond_logprobs,            # same continuation after unconditional_prompt (LMs; null
                                              #   unless scoring=unconditional-norm)
                  score, calibrated}]         # score under params scoring; calibrated (calibrator set)
    calibration: [{option, n_shared_prefix, n_shared_suffix,
                   candidates: [{label, n_tokens, logprobs, uncond_logprobs, score}]}]   # calibrator set
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional, Sequence

from fewshot_eval import progress
from fewshot_eval.evaluate.api import Loglik, Predictor, Request, TrialResult, split_whitespace
from fewshot_eval.evaluate.calibration import apply_option, calibrate, check_calibrator, parse_option, task_options
from fewshot_eval.evaluate.demonstrations import Sample, fit_demonstrations, join_prompt, sample_demonstrations
from fewshot_eval.evaluate.metrics import compute_metrics
from fewshot_eval.evaluate.scoring import argmax, check_mode, score_candidates, shared_prefix_suffix
from fewshot_eval.evaluate.tasks import TaskDef, load_task_def, select_languages, select_templates, split_data

log = logging.getLogger(__name__)

# Warnings already logged by this process: each distinct text is logged once (every trial still records its own in info).
_logged_warnings: set[str] = set()


def build_predictor(model: dict[str, Any], params: dict[str, Any]) -> Predictor:
    """The predictor registered under ``params['predictor']`` (else the model setting's), built for this job."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_class

    name = params.get("predictor") or model.get("predictor") or "clm"
    return predictor_class(name, config_dirs()).from_settings(model, params)


def sub_result_id(task: str, template: str, lang: Optional[str]) -> str:
    return f"{task}.{template}" + (f".{lang}" if lang else "")


def _description(params: dict[str, Any], task: str) -> Optional[str]:
    d = params.get("description")
    return d.get(task) if isinstance(d, dict) else d


class FewShotEvaluator:
    """Implements :class:`fewshot_eval.evaluate.Evaluator`; the predictor (model) loads once."""

    def __init__(self, model: dict[str, Any], params: dict[str, Any], predictor: Optional[Predictor] = None) -> None:
        self.model = model
        self.predictor = predictor or build_predictor(model, params)
        # (unconditional_prompt, continuation) -> its log-probs: scored once per job, not per example/trial
        self._uncond: dict[tuple[str, str], Loglik] = {}

    # ------------------------------------------------------------------ the interface
    def run_trial(self, tasks: Sequence[str], params: dict[str, Any], nshot: int, trial: int) -> TrialResult:
        t0 = time.time()
        mode = check_mode(params.get("scoring"))
        calibrator = check_calibrator(params.get("calibrator"))
        seed = int(params.get("seed") or 0) + int(trial)
        metrics: dict[str, dict[str, Any]] = {}
        predictions: dict[str, list[dict[str, Any]]] = {}
        info: dict[str, Any] = {
            "nshot": nshot,
            "trial": trial,
            "seed": seed,
            "scoring": mode,
            "calibrator": calibrator,
            **self.predictor.describe(),
            "preferred_metric": {},
            "demonstrations": {},
            "warnings": [],
        }
        unused = ([f"scoring={mode}"] if mode != "sum" else []) + ([f"calibrator={calibrator}"] if calibrator else [])
        if not self.predictor.is_lm and unused:
            info["warnings"].append(f"predictor '{info['predictor']}' is a baseline: {' and '.join(unused)} ignored (baselines use their own scores).")
        for name in tasks:
            task = load_task_def(name)
            templates = select_templates(task, params)
            langs, train_lang = select_languages(task, params)
            options = task_options(params, name) if calibrator and self.predictor.is_lm else []
            for lang in langs:
                eval_docs, pool = split_data(task, params, lang, train_lang)
                sample = sample_demonstrations(pool, nshot, seed, balanced=bool(params.get("balanced")), labels=task.labels, task=name)
                info["warnings"].extend(sample.warnings)
                self.predictor.begin(name, [d["_label"] for d in pool], seed)
                for tname in templates:
                    sid = sub_result_id(name, tname, lang)
                    t_sub = time.perf_counter()
                    rows = self._score(task, tname, lang, train_lang or lang, eval_docs, sample, params, mode, options)
                    self._log_rate(sid, trial, len(rows), time.perf_counter() - t_sub)
                    gold = [r["gold"] for r in rows]
                    metrics[sid] = compute_metrics(gold, [r["pred"] for r in rows], [r["pred_raw"] for r in rows] if options and self.predictor.is_lm else None, task.metrics)
                    predictions[sid] = rows
                    info["preferred_metric"][sid] = task.preferred_metric
                    kept = [r["n_demos"] for r in rows] or [0]
                    info["demonstrations"][sid] = {
                        "requested": nshot,
                        "sampled": len(sample.docs),
                        "kept_min": min(kept),
                        "kept_max": max(kept),
                        "ids": [d["_id"] for d in sample.docs],
                        "train_language": train_lang or lang,
                        "pool_size": len(pool),
                    }
                    if min(kept) < len(sample.docs):
                        info["warnings"].append(f"{sid}: max_length {self.predictor.max_length} kept only {min(kept)}..{max(kept)} of {len(sample.docs)} demonstrations.")
        info["time_s"] = round(time.time() - t0, 3)
        for w in info["warnings"]:
            if w not in _logged_warnings:
                _logged_warnings.add(w)
                log.warning(w)
        return TrialResult(metrics=metrics, predictions=predictions, info=info)

    def _log_rate(self, sid: str, trial: int, n: int, seconds: float) -> None:
        """``[3/18] trial 1 (2/3) copa_demo.default: 100 examples in 2.1s (47.6 ex/s)`` -- the progress of
        a long job. Baselines take milliseconds: their lines are DEBUG, not to drown a sweep's log."""
        tag = progress.trial_tag  # "trial 1 (2/3)", set by the job for the trial it runs
        where = tag if tag.startswith(f"trial {trial} ") else f"trial {trial}"
        log.log(logging.INFO if self.predictor.is_lm else logging.DEBUG, "%s%s %s: %d examples in %.1fs (%.1f ex/s)",
                progress.job_prefix, where, sid, n, seconds, n / seconds if seconds > 0 else float("inf"))

    # ------------------------------------------------------------------ one sub-result
    def _score(self, task: TaskDef, tname: str, lang, demo_lang, eval_docs, sample: Sample, params, mode: str, options: list[str]) -> list[dict]:
        tmpl = task.templates[tname]
        pred = self.predictor
        sep = params.get("train_sep")
        sep = "\n\n" if sep is None else str(sep)
        desc = _description(params, task.name)
        uncond_prompt = params.get("unconditional_prompt")
        uncond_prompt = "Answer:" if uncond_prompt is None else str(uncond_prompt)
        demos = [tmpl.fill(d, d["_label"], demo_lang) for d in sample.docs]
        parsed = [(o, parse_option(o, task.name)) for o in options] if pred.is_lm else []
        need_uncond = pred.is_lm and mode == "unconditional-norm"  # the only mode that reads them

        requests: list[Request] = []
        uncond: dict[tuple[str, str], Request] = {}  # not yet scored in this job
        plans = []
        for doc in eval_docs:
            items = [(None, doc)] + [(o, apply_option(doc, pairs, task.name, o)) for o, pairs in parsed]
            parts = []
            for option, d in items:
                prefix, suffix = tmpl.split(d, lang)
                conts = [tmpl.verbalise(d, lab, lang) + suffix for lab in task.labels]
                parts.append((option, prefix, conts))
            k = len(demos)
            if pred.max_length:
                k = fit_demonstrations(
                    demos,
                    lambda k: [join_prompt(demos[:k], prefix, sep, desc) + c for _, prefix, conts in parts for c in conts],
                    pred.num_tokens,
                    pred.max_length,
                )
            item_reqs = []
            for option, prefix, conts in parts:
                ctx_raw = join_prompt(demos[:k], prefix, sep, desc)
                pairs = [split_whitespace(ctx_raw, c) for c in conts]
                idx = []
                for lab, (ctx, cont) in zip(task.labels, pairs):
                    idx.append(len(requests))
                    requests.append(Request(ctx, cont, doc["_id"], lab))
                    if need_uncond and (uncond_prompt, cont) not in self._uncond:
                        uncond.setdefault((uncond_prompt, cont), Request(uncond_prompt, cont, doc["_id"], lab))
                item_reqs.append((option, pairs[0][0], [c for _, c in pairs], idx))
            plans.append((doc, k, item_reqs))

        results = pred.loglikelihood(requests + list(uncond.values())) if requests else []
        self._uncond.update(zip(uncond, results[len(requests) :]))
        rows = []
        for doc, k, item_reqs in plans:
            scored = []
            for option, ctx, conts, idx in item_reqs:
                cands = []
                for lab, cont, i in zip(task.labels, conts, idx):
                    res: Loglik = results[i]
                    c = {"label": lab, "text": cont, "n_tokens": len(res.logprobs) if pred.is_lm else None}
                    if pred.is_lm:
                        u = self._uncond[(uncond_prompt, cont)].logprobs if need_uncond else None
                        c.update(logprobs=res.logprobs, uncond_logprobs=u, _tokens=res.tokens)
                    else:
                        c.update(logprobs=None, uncond_logprobs=None, score=res.total)
                    cands.append(c)
                p, s = shared_prefix_suffix([c.pop("_tokens") for c in cands]) if pred.is_lm else (0, 0)
                item = {"n_shared_prefix": p, "n_shared_suffix": s, "candidates": cands}
                scores = score_candidates(item, mode if pred.is_lm else "sum", where=f" (task '{task.name}' template '{tname}')")
                for c, sc in zip(cands, scores):
                    c["score"] = sc
                scored.append((option, ctx, item))
            (_, ctx, main), variants = scored[0], scored[1:]
            raw_scores = [c["score"] for c in main["candidates"]]
            labels = task.labels
            row = {"id": doc["_id"], "gold": doc["_label"]}
            if variants:
                cal = calibrate(raw_scores, [[c["score"] for c in v["candidates"]] for _, _, v in variants])
                for c, v in zip(main["candidates"], cal):
                    c["calibrated"] = v
                row["pred"] = labels[argmax(cal)]
                row["pred_raw"] = labels[argmax(raw_scores)]
            else:
                row["pred"] = labels[argmax(raw_scores)]
            row["correct"] = row["pred"] == row["gold"]
            row.update(prompt=ctx, n_demos=k, **main)
            if variants:
                row["calibration"] = [{"option": o, **v} for o, _, v in variants]
            rows.append(row)
        return rows

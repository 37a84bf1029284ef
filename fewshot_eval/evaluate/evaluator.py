"""``FewShotEvaluator``: one trial of (tasks x templates x languages) -> metrics + prediction rows.

Per task and evaluated language the trial's demonstrations are drawn once (seed + trial), so
every template of a trial sees the same demonstrations (``demo_sampling=per_example``: each
example draws its own, lm-eval's way; see ``demonstrations``). All requests of one sub-result
(candidates, calibration variants, unconditional continuations) go to the predictor in one
batch, which lets the LM share every common prefix across them. Unconditional continuations
(``unconditional_prompt`` + candidate) are scored only under ``scoring=unconditional-norm``, once
per distinct candidate text in a job (cached across examples and trials).

Generation tasks (``kind: generate``) go to :mod:`fewshot_eval.evaluate.tasks.generation_task` with the
same demonstrations, chat format and predictor (rows: ``id, prompt, output, references,
n_demos, [demo_ids]``). Ranking prediction row (one per evaluated example; JSON-serialisable)::

    id, gold, pred, correct, [pred_raw]        # pred_raw: uncalibrated prediction (calibrator set)
    prompt                                    # context: description + demonstrations + test prefix (chat: templated)
    n_demos                                   # demonstrations kept (fewer than sampled if max_length hit)
    [demo_ids]                                # demo_sampling=per_example: this example's demonstrations
    n_shared_prefix, n_shared_suffix          # tokens all candidates' continuations share at start / end
    candidates: [{label, text,                # text: continuation = verbalisation + suffix
                  n_tokens, logprobs,         # per-token log-probs of the continuation (null: baseline)
                  uncond_logprobs,            # same continuation after unconditional_prompt (LMs; null
                                              #   unless scoring=unconditional-norm)
                  score, calibrated}]         # score under params scoring; calibrated (calibrator set)
    calibration: [{option, n_shared_prefix, n_shared_suffix,
                   candidates: [{label, n_tokens, logprobs, uncond_logprobs, score}]}]   # calibrator set

Task shapes (:mod:`~fewshot_eval.evaluate.tasks.shapes`) keep these rows (``gold`` a list with several
answers; ``group``/``positive`` for grouped sub-problems); a perplexity task's rows are
documents (:mod:`~fewshot_eval.evaluate.tasks.perplexity_task`), scored by ``loglikelihood_rolling``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional, Sequence

from fewshot_eval import progress
from fewshot_eval.evaluate.backends.predictor import Loglik, Predictor, Request, split_whitespace
from fewshot_eval.evaluate.calibration import apply_option, calibrate, check_calibrator, parse_option, task_options
from fewshot_eval.evaluate.metrics.compute import compute_metrics
from fewshot_eval.evaluate.metrics.prediction_rows import is_correct
from fewshot_eval.evaluate.scoring import argmax, check_mode, score_candidates, shared_prefix_suffix
from fewshot_eval.evaluate.tasks.chat import chat_format
from fewshot_eval.evaluate.tasks.definitions import TaskDef, load_task_def
from fewshot_eval.evaluate.tasks.demonstrations import (
    PER_EXAMPLE,
    Sample,
    check_demo_sampling,
    fit_demonstrations,
    join_prompt,
    sample_demonstrations,
    sample_lm_eval,
    sample_per_example,
)
from fewshot_eval.evaluate.tasks.generation_task import generate_rows, generation_metrics, ignored_by_generation
from fewshot_eval.evaluate.tasks.perplexity_task import score_documents
from fewshot_eval.evaluate.tasks.selection import lm_eval_drops_evaluated, select_languages, select_metrics, select_templates, split_data
from fewshot_eval.evaluate.tasks.shapes import row_fields
from fewshot_eval.evaluate.trial_result import TrialResult
from fewshot_eval.param_schema import typed_params

log = logging.getLogger(__name__)

# Warnings already logged by this process: each distinct text is logged once (every trial still records its own in info).
_logged_warnings: set[str] = set()


def build_predictor(model: dict[str, Any], params: dict[str, Any]) -> Predictor:
    """The predictor registered under ``params['predictor']`` (else the model setting's), built for this job."""
    from fewshot_eval.config import ConfigError, config_dirs
    from fewshot_eval.evaluate.registry import predictor_class

    name = params.get("predictor") or model.get("predictor")
    if not name:
        raise ConfigError(f"model '{model.get('name', '?')}': no predictor. Pass a validated model setting "
                          "(fewshot_eval.settings.model_setting: its schema has the default) or params['predictor'].")
    return predictor_class(name, config_dirs()).from_settings(model, params)


def sub_result_id(task: str, template: str, lang: Optional[str]) -> str:
    return f"{task}.{template}" + (f".{lang}" if lang else "")


def _description(params: dict[str, Any], task: str) -> Optional[str]:
    d = params.get("description")
    return d.get(task) if isinstance(d, dict) else d


def unused_settings(mode: str, calibrator: Optional[str]) -> list[str]:
    """The set scoring/calibrator params (``scoring=mean``) -- what baselines, generated text and lm-eval's
    metrics ignore."""
    return ([f"scoring={mode}"] if mode != "sum" else []) + ([f"calibrator={calibrator}"] if calibrator else [])


def baseline_warning(predictor: str, unused: Sequence[str]) -> list[str]:
    """The trial's warning that a baseline ignores ``unused`` (none when nothing is set)."""
    return [f"predictor '{predictor}' is a baseline: {' and '.join(unused)} ignored (baselines use their own scores)."] if unused else []


def catalog_warning(names: Sequence[str], unused: Sequence[str]) -> list[str]:
    """The trial's warning that lm-eval catalog tasks ``names`` ignore ``unused`` (none when nothing is set)."""
    return [f"lm-eval catalog tasks {list(names)} ignore {' and '.join(unused)} (lm-eval computes their metrics, e.g. acc and acc_norm)."] if unused else []


class FewShotEvaluator:
    """Implements :class:`fewshot_eval.evaluate.Evaluator`; the predictor (model) loads once."""

    def __init__(self, model: dict[str, Any], params: dict[str, Any], predictor: Optional[Predictor] = None) -> None:
        self.model = model
        self.predictor = predictor or build_predictor(model, params)
        self.chat = chat_format(model.get("chat"), self.predictor, model.get("name", "?"))  # None: plain prompts
        # (unconditional_prompt, continuation) -> its log-probs: scored once per job, not per example/trial
        self._uncond: dict[tuple[str, str], Loglik] = {}

    # ------------------------------------------------------------------ the interface
    def run_trial(self, tasks: Sequence[str], params: dict[str, Any], nshot: int, trial: int) -> TrialResult:
        t0 = time.time()
        p = typed_params(params)  # the fields of fewshot_eval/param_schema.py, defaults filled in
        mode = check_mode(p.scoring)
        calibrator = check_calibrator(p.calibrator)
        sampling = check_demo_sampling(p.demo_sampling, balanced=p.balanced)
        per_example = sampling in PER_EXAMPLE
        lm_eval_rule = sampling == "per_example_lm_eval"  # per example, with lm-eval's k / k+1 rule
        seed = p.seed + int(trial)
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
        unused = unused_settings(mode, calibrator)
        if not self.predictor.is_lm:
            info["warnings"].extend(baseline_warning(info["predictor"], unused))
        from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import is_catalog

        catalog_tasks = [t for t in tasks if is_catalog(t)]
        for name in (t for t in tasks if not is_catalog(t)):
            task = load_task_def(name)
            templates = select_templates(task, params)
            names = select_metrics(task, params)  # its own metrics + extra_metrics
            langs, train_lang = select_languages(task, params)
            ppl = task.kind == "perplexity"  # whole documents: no demonstrations, no candidates
            gen = task.kind == "generate"  # generated text: no candidates to rank or calibrate
            options = task_options(params, name) if calibrator and self.predictor.is_lm and not (ppl or gen) else []
            if ppl and nshot:
                info["warnings"].append(f"task '{name}' is a perplexity task: nshot={nshot} ignored (documents are scored without demonstrations).")
            for lang in langs:
                eval_docs, pool = split_data(task, params, lang, train_lang, demonstrations=nshot != 0 and not ppl, keep_evaluated=lm_eval_rule)
                if ppl:
                    sample = Sample([], nshot)
                elif lm_eval_rule:  # lm-eval's sampler with its k / k+1 rule
                    k_plus_one = lm_eval_drops_evaluated(task, params)
                    sample = sample_lm_eval(pool, eval_docs, nshot, seed, drop_evaluated=k_plus_one, task=name)
                elif per_example:  # docs: one list per example (lm-eval's sampler)
                    sample = sample_per_example(pool, len(eval_docs), nshot, seed, task=name)
                else:
                    sample = sample_demonstrations(pool, nshot, seed, balanced=p.balanced, labels=task.labels, task=name)
                sampled = len(sample.docs[0]) if per_example and sample.docs else len(sample.docs)
                info["warnings"].extend(sample.warnings)
                self.predictor.begin(name, [d["_label"] for d in pool], seed)
                for tname in templates:
                    sid = sub_result_id(name, tname, lang)
                    t_sub = time.perf_counter()
                    if gen:  # evaluate/tasks/generation_task.py
                        rows = generate_rows(self.predictor, task, tname, lang, train_lang or lang, eval_docs, sample, params, seed,
                                             _description(params, name), per_example, self.chat)
                        info["warnings"].extend(ignored_by_generation(sid, mode, calibrator))
                    elif ppl:
                        rows = score_documents(self.predictor, task, tname, lang, eval_docs)
                    else:
                        rows = self._score(task, tname, lang, train_lang or lang, eval_docs, sample, params, mode, options, per_example)
                    self._log_rate(sid, trial, len(rows), time.perf_counter() - t_sub)
                    if task.record_fields:  # the data fields row metrics read (StereoSet's target term)
                        for row, doc in zip(rows, eval_docs, strict=True):
                            row["fields"] = dict(doc["_fields"])
                    if gen:
                        metrics[sid] = generation_metrics(rows, names)
                    else:
                        gold = [r["gold"] for r in rows]
                        metrics[sid] = compute_metrics(gold, [r["pred"] for r in rows], [r["pred_raw"] for r in rows] if options else None, names, rows)
                    predictions[sid] = rows
                    info["preferred_metric"][sid] = task.preferred_metric
                    kept = [r.get("n_demos", 0) for r in rows] or [0]
                    info["demonstrations"][sid] = {
                        "requested": nshot,
                        "sampled": sampled,
                        "kept_min": min(kept),
                        "kept_max": max(kept),
                        "ids": None if per_example else [d["_id"] for d in sample.docs],  # per example: each row's demo_ids
                        "train_language": train_lang or lang,
                        "pool_size": len(pool),
                        **({"lm_eval_k_plus_one": k_plus_one} if lm_eval_rule and not ppl else {}),  # k+1 drawn, the evaluated example dropped
                    }
                    if min(kept) < sampled:
                        info["warnings"].append(f"{sid}: max_length {self.predictor.max_length} kept only {min(kept)}..{max(kept)} "
                                                f"of {sampled} demonstrations.")
        if catalog_tasks:
            self._run_catalog(catalog_tasks, params, nshot, trial, unused, metrics, predictions, info)
        info["time_s"] = round(time.time() - t0, 3)
        for w in info["warnings"]:
            if w not in _logged_warnings:
                _logged_warnings.add(w)
                log.warning(w)
        self._note_predictor_changes(info)
        return TrialResult(metrics=metrics, predictions=predictions, info=info)

    def _note_predictor_changes(self, info: dict[str, Any]) -> None:
        """Notes the predictor added during the trial (``clm`` halving its batch after running out of
        memory) go to the trial's ``predictor_notes`` and ``warnings`` (the predictor logged them)."""
        before = info.get("predictor_notes") or []
        after = self.predictor.describe().get("predictor_notes") or []
        new = [n for n in after if n not in before]
        if new:
            info["predictor_notes"] = list(after)
            info["warnings"].extend(new)

    def _run_catalog(self, names: list[str], params: dict[str, Any], nshot: int, trial: int, ignored: list[str],
                     metrics: dict, predictions: dict, info: dict) -> None:
        """lm-evaluation-harness catalog tasks (``lm_eval:<name>``): lm-eval builds and measures, our predictor scores;
        ``ignored``: the set scoring/calibrator params (``scoring=mean``), which lm-eval's metrics do not use."""
        from fewshot_eval.evaluate.lm_eval_bridge.catalog_runner import run_catalog_tasks

        t_sub = time.perf_counter()
        m, p, extra = run_catalog_tasks(self.predictor, names, params, nshot, trial)
        metrics.update(m)
        predictions.update(p)
        info["preferred_metric"].update(extra.pop("preferred_metric"))
        info.update(extra)
        for sid, rows in p.items():
            self._log_rate(sid, trial, len(rows), time.perf_counter() - t_sub)
        info["warnings"].extend(catalog_warning(names, ignored))

    def _log_rate(self, sid: str, trial: int, n: int, seconds: float) -> None:
        """``[3/18] trial 1 (2/3) copa_demo.default: 100 examples in 2.1s (47.6 ex/s)`` -- the progress of
        a long job. Baselines take milliseconds: their lines are DEBUG, not to drown a sweep's log."""
        tag = progress.trial_tag  # "trial 1 (2/3)", set by the job for the trial it runs
        where = tag if tag.startswith(f"trial {trial} ") else f"trial {trial}"
        log.log(logging.INFO if self.predictor.is_lm else logging.DEBUG, "%s%s %s: %d examples in %.1fs (%.1f ex/s)",
                progress.job_prefix, where, sid, n, seconds, n / seconds if seconds > 0 else float("inf"))

    # ------------------------------------------------------------------ one sub-result
    def _score(self, task: TaskDef, tname: str, lang, demo_lang, eval_docs, sample: Sample, params, mode: str, options: list[str],
               per_example: bool = False) -> list[dict]:
        tmpl = task.templates[tname]
        pred = self.predictor
        p = typed_params(params)
        sep = str(p.train_sep)
        desc = _description(params, task.name)
        uncond_prompt = str(p.unconditional_prompt)

        def demo(d: dict) -> Any:  # a filled template; for chat, (user turn, assistant turn)
            if self.chat is None:
                return tmpl.fill(d, d["_label"], demo_lang)
            user, rest = tmpl.split(d, demo_lang)
            return user, tmpl.verbalise(d, d["_label"], demo_lang) + rest

        def context(demos: list, prefix: str) -> str:
            return self.chat.context(demos, prefix, sep, desc) if self.chat else join_prompt(demos, prefix, sep, desc)

        shared = None if per_example else [demo(d) for d in sample.docs]
        parsed = [(o, parse_option(o, task.name)) for o in options] if pred.is_lm else []
        need_uncond = pred.is_lm and mode == "unconditional-norm"  # the only mode that reads them

        requests: list[Request] = []
        uncond: dict[tuple[str, str], Request] = {}  # not yet scored in this job
        plans = []
        for j, doc in enumerate(eval_docs):
            demos = shared if shared is not None else [demo(d) for d in sample.docs[j]]
            items = [(None, doc)] + [(o, apply_option(doc, pairs, task.name, o)) for o, pairs in parsed]
            parts = []
            labels = task.labels_of(doc)  # per example with choices_field
            for option, d in items:
                prefix, suffix = tmpl.split(d, lang)
                conts = [tmpl.verbalise(d, lab, lang) + suffix for lab in labels]
                parts.append((option, prefix, conts))
            k = len(demos)
            if pred.max_length:
                k = fit_demonstrations(
                    demos,
                    lambda k: [context(demos[:k], prefix) + c for _, prefix, conts in parts for c in conts],  # noqa: B023 (called before the loop moves on)
                    pred.num_tokens,
                    pred.max_length,
                )
            item_reqs = []
            for option, prefix, conts in parts:
                ctx_raw = context(demos[:k], prefix)
                pairs = [split_whitespace(ctx_raw, c) for c in conts]
                idx = []
                for lab, (ctx, cont) in zip(labels, pairs):
                    idx.append(len(requests))
                    requests.append(Request(ctx, cont, doc["_id"], lab))
                    if need_uncond and (uncond_prompt, cont) not in self._uncond:
                        uncond.setdefault((uncond_prompt, cont), Request(uncond_prompt, cont, doc["_id"], lab))
                item_reqs.append((option, pairs[0][0], [c for _, c in pairs], idx))
            plans.append((doc, k, item_reqs, labels))

        results = pred.loglikelihood(requests + list(uncond.values())) if requests else []
        self._uncond.update(zip(uncond, results[len(requests) :]))
        rows = []
        for doc, k, item_reqs, labels in plans:
            scored = []
            for option, ctx, conts, idx in item_reqs:
                cands = []
                for lab, cont, i in zip(labels, conts, idx):
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
            row = {"id": doc["_id"], **row_fields(task, doc)}
            if variants:
                cal = calibrate(raw_scores, [[c["score"] for c in v["candidates"]] for _, _, v in variants])
                for c, v in zip(main["candidates"], cal):
                    c["calibrated"] = v
                row["pred"] = labels[argmax(cal)]
                row["pred_raw"] = labels[argmax(raw_scores)]
            else:
                row["pred"] = labels[argmax(raw_scores)]
            row["correct"] = is_correct(row["pred"], row["gold"])
            row.update(prompt=ctx, n_demos=k, **main)
            if variants:
                row["calibration"] = [{"option": o, **v} for o, _, v in variants]
            if per_example:
                row["demo_ids"] = [d["_id"] for d in sample.docs[len(rows)][:k]]
            rows.append(row)
        return rows

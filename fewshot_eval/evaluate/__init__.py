"""Evaluate stage: the job body's interface to the few-shot evaluator.

The scheduler (``fewshot_eval.app``) calls exactly this::

    evaluator = build_evaluator(model, params)          # loads the model once per job
    for trial in trials:
        result = evaluator.run_trial(tasks, params, nshot, trial)
        store.write_trial(result_dir, trial, result)   # predictions JSONL + metrics, atomically

``model`` is a validated model setting (``fewshot_eval.settings.model_setting``), ``params``
the job's effective evaluation params (``fewshot_eval.config.effective_params``, with
``params["predictor"]`` already resolved), ``tasks`` the task setting's list of task names.

Where things live::

    evaluator.py       one trial: tasks x templates x languages -> prediction rows + metrics
    resume.py          the per-trial cache of scored requests (a killed job resumes)
    scoring.py, calibration.py, rescoring.py   candidate scores; recalc without a model
    tasks/             task definitions (definitions), their data (task_data), what the params
                       select (selection), templates, demonstrations, shapes, chat prompts,
                       generation and perplexity tasks, planning checks (task_checks)
    lm_eval_bridge/    lm-eval's task catalog: catalog_index, catalog_manager, catalog_identity, catalog_checks,
                       catalog_search, catalog_runner
    backends/          predictors: the interface (predictor), clm, vllm, served models, baselines
    metrics/           every registered metric (a module added there registers itself)
    registry.py        named predictors and metrics
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fewshot_eval.evaluate.trial_result import Evaluator, TrialResult

__all__ = ["Evaluator", "TrialResult", "build_evaluator", "recalc_metrics", "preferred_metric"]


def build_evaluator(model: dict[str, Any], params: dict[str, Any], result_dir: Path | None = None, weights: str | None = None) -> Evaluator:
    """Build the evaluator for one job: the predictor named by ``params['predictor']``.

    With ``result_dir``, a language model's scored requests are cached per trial under it
    (:mod:`fewshot_eval.evaluate.resume`): a killed job's rerun rescores at most the batch in flight. ``weights``:
    the weights fingerprint, part of the cache keys."""
    from fewshot_eval.evaluate.evaluator import FewShotEvaluator

    evaluator = FewShotEvaluator(model, params)
    if result_dir is None or not evaluator.predictor.is_lm:  # baselines answer at once: nothing to resume
        return evaluator
    from fewshot_eval.evaluate.resume import ResumableEvaluator

    return ResumableEvaluator(evaluator, result_dir, model, params, weights)


def recalc_metrics(rows: list[dict[str, Any]], params: dict[str, Any], task: str | None = None) -> dict[str, Any]:
    """Metrics of stored prediction rows under ``params['scoring']``/``['calibrator']``; no model loaded.

    See :mod:`fewshot_eval.evaluate.rescoring`. ``task`` selects ``params['calibration_options'][task]``.
    """
    from fewshot_eval.evaluate.rescoring import recalc_metrics as _recalc

    return _recalc(rows, params, task)


def preferred_metric(task: str) -> str:
    """The metric a task definition prefers (``accuracy`` or ``macro_f1``)."""
    from fewshot_eval.evaluate.tasks.definitions import load_task_def

    return load_task_def(task).preferred_metric

"""Recompute metrics from stored prediction rows under another scoring mode or calibration.

No model is loaded: rows carry each candidate's per-token log-probs (``logprobs``), those of
the unconditional continuation (``uncond_logprobs``, computed only by runs with
``scoring=unconditional-norm``: recalc to that mode from other runs is an error saying to
re-run), the shared prefix/suffix token counts
and, when the run was calibrated, the content-free variants (``calibration``). Scoring the
rows with the run's own params reproduces the run's metrics exactly (same functions, same
floats). Baseline rows (no log-probs) keep their stored ``score``. Rows of generation tasks
(``output`` and ``references``) are kept as they are -- scoring modes and calibration do not
apply to them -- and their metrics are computed again from the stored outputs.

    from fewshot_eval.evaluate.rescoring import recalc_metrics
    recalc_metrics(rows, {"scoring": "mean", "calibrator": None})
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.calibration import calibrate, check_calibrator
from fewshot_eval.evaluate.metrics.compute import compute_metrics
from fewshot_eval.evaluate.metrics.label_metrics import DEFAULT_METRICS
from fewshot_eval.evaluate.metrics.prediction_rows import is_correct
from fewshot_eval.evaluate.scoring import argmax, check_mode, score_candidates
from fewshot_eval.evaluate.tasks.generation_task import generation_metrics, is_generation_row


def _wanted_options(params: dict[str, Any], task: Optional[str]) -> Optional[list[str]]:
    opts = params.get("calibration_options")
    if not opts:
        return None
    value = opts.get(task) if isinstance(opts, dict) else opts
    if value in (None, "", []):
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


def rescore_rows(rows: Sequence[dict[str, Any]], params: dict[str, Any], task: Optional[str] = None) -> list[dict[str, Any]]:
    """New rows (copies) with ``score``/``calibrated``/``pred``/``pred_raw``/``correct`` for ``params``.

    ``params['scoring']`` picks the mode, ``params['calibrator']`` (``average_option``) uses the
    stored variants — only those in ``params['calibration_options'][task]`` when given.
    """
    mode = check_mode(params.get("scoring"))
    calibrator = check_calibrator(params.get("calibrator"))
    wanted = _wanted_options(params, task)
    out = []
    for row in rows:
        if "candidates" not in row:  # a perplexity document or a generated text: nothing to rescore
            out.append(dict(row))
            continue
        where = f" (row '{row.get('id')}')"
        labels = [c["label"] for c in row["candidates"]]
        is_lm = all(c.get("logprobs") is not None for c in row["candidates"])
        scores = score_candidates(row, mode if is_lm else "sum", where=where)
        new = {**row, "candidates": [{**c, "score": s} for c, s in zip(row["candidates"], scores)]}
        new.pop("pred_raw", None)
        if calibrator and is_lm:
            variants = row.get("calibration") or []
            if wanted is not None:
                stored = [v["option"] for v in variants]
                missing = [o for o in wanted if o not in stored]
                if missing:
                    raise ConfigError(f"recalc: calibration option(s) {missing} were not scored in this run{where}; "
                                      f"stored: {stored or '(none)'}. Re-run the evaluation with them.")
                variants = [v for v in variants if v["option"] in wanted]
            if not variants:
                raise ConfigError(f"recalc: calibrator=average_option needs rows from a run with calibration_options{where}; "
                                  f"this run has no calibration variants.")
            vscores = [score_candidates(v, mode, where=where) for v in variants]
            new["calibration"] = [{**v, "candidates": [{**c, "score": s} for c, s in zip(v["candidates"], vs)]} for v, vs in zip(variants, vscores)]
            cal = calibrate(scores, vscores)
            for c, v in zip(new["candidates"], cal):
                c["calibrated"] = v
            new["pred"] = labels[argmax(cal)]
            new["pred_raw"] = labels[argmax(scores)]
        else:
            for c in new["candidates"]:
                c.pop("calibrated", None)
            new["pred"] = labels[argmax(scores)]
        new["correct"] = is_correct(new["pred"], row["gold"])
        out.append(new)
    return out


def recalc_metrics(rows: Sequence[dict[str, Any]], params: dict[str, Any], task: Optional[str] = None,
                   names: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Metrics ``names`` of stored rows under ``params`` (``scoring``, ``calibrator``, ``calibration_options``).

    Same keys as a run: each metric, ``n_examples`` and, calibrated, ``<metric>_raw``. ``names``
    None: accuracy and macro-F1; for rows of a generation task, exact match and F1.
    """
    if rows and all(is_generation_row(r) for r in rows):
        from fewshot_eval.evaluate.metrics.text_metrics import DEFAULT_GENERATION_METRICS

        return generation_metrics(rows, DEFAULT_GENERATION_METRICS if names is None else names)
    names = DEFAULT_METRICS if names is None else names
    new = rescore_rows(rows, params, task)
    gold = [r.get("gold") for r in new]
    raw = [r["pred_raw"] for r in new] if new and all("pred_raw" in r for r in new) else None
    return compute_metrics(gold, [r.get("pred") for r in new], raw, names, new)

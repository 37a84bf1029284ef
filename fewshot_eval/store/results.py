"""Write a trial's outputs and the aggregated results of a job."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json, write_json, write_jsonl


def write_trial(result_dir: Path, trial: int, result: Any, fingerprint: str, weights: str | None = None) -> None:
    """Predictions first, then ``metrics.json``: a trial counts as done only once its metrics exist."""
    for subkey, rows in result.predictions.items():
        write_jsonl(layout.predictions_file(result_dir, trial, subkey), rows)
    record = {"trial": trial, "fingerprint": fingerprint, "metrics": result.metrics, "info": result.info}
    if weights is not None:
        record["weights"] = weights
    write_json(layout.trial_dir(result_dir, trial) / layout.METRICS, record)


def summarize(values: list[float]) -> dict[str, Any]:
    """Mean, sample std and 95% t-interval half-width over trials."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    if n > 1:
        from scipy.stats import t

        half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    else:
        half = 0.0
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "per_trial": values}


def prepare_aggregation() -> None:
    """Import what aggregating needs (scipy takes seconds the first time) before the last trial is written,
    so that the window between the last ``metrics.json`` and ``results.json`` stays short."""
    import scipy.stats  # noqa: F401


def write_results(result_dir: Path, record: dict[str, Any], trials: list[int]) -> dict[str, Any]:
    """Aggregate ``trials`` and write ``results.json`` (the completion marker), last.

    ``record`` holds the result's header (fingerprint, model, task setting, params, repro ...);
    each sub-result gets its task's ``preferred_metric`` (from the trials' info)."""
    results = aggregate(result_dir, trials)
    first = read_json(layout.trial_dir(result_dir, trials[0]) / layout.METRICS) or {}
    for sub, name in ((first.get("info") or {}).get("preferred_metric") or {}).items():
        if sub in results and isinstance(name, str):
            results[sub]["preferred_metric"] = name
    data = {**record, "trials": list(trials), "results": results}
    write_json(result_dir / layout.RESULTS, data)
    return data


def aggregate(result_dir: Path, trials: list[int]) -> dict[str, dict[str, Any]]:
    """Combine ``trial<t>/metrics.json`` of ``trials`` into per-subresult, per-metric summaries."""
    per_trial = [read_json(layout.trial_dir(result_dir, t) / layout.METRICS)["metrics"] for t in trials]
    out: dict[str, dict[str, Any]] = {}
    for subkey in per_trial[0]:
        out[subkey] = {}
        for metric, value in per_trial[0][subkey].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[subkey][metric] = summarize([float(m[subkey][metric]) for m in per_trial])
            else:
                out[subkey][metric] = value
    return out

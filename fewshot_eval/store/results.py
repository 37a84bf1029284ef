"""Write a trial's outputs and the aggregated results of a job."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import file_record, json_bytes, jsonl_bytes, read_json, write_bytes
from fewshot_eval.store.legacy import legacy_trial_files


def write_trial_files(result_dir: Path, trial: int, predictions: dict[str, list[Any]], record: dict[str, Any]) -> None:
    """Predictions first, then ``metrics.json`` (``record`` plus a ``files`` map: size, sha256 and mtime of each
    predictions file): a trial counts as done only once its metrics exist and the files they list are
    whole. Every file is replaced atomically, so recomputing a broken trial overwrites it cleanly."""
    files: dict[str, dict[str, Any]] = {}
    for subkey, rows in predictions.items():
        path = layout.predictions_file(result_dir, trial, subkey)
        data = jsonl_bytes(rows)
        write_bytes(path, data)
        files[path.name] = file_record(data, path)
    write_bytes(layout.trial_dir(result_dir, trial) / layout.METRICS, json_bytes({**record, "files": files}))


def write_trial(result_dir: Path, trial: int, result: Any, fingerprint: str, weights: str | None = None) -> None:
    record = {"trial": trial, "fingerprint": fingerprint, "metrics": result.metrics, "info": result.info}
    if weights is not None:
        record["weights"] = weights
    write_trial_files(result_dir, trial, result.predictions, record)


def trial_files(result_dir: Path, trials: list[int]) -> dict[str, dict[str, Any]]:
    """The ``files`` map of ``results.json``: each trial's ``metrics.json`` and the predictions files
    its own map lists, keyed ``trial<t>/<name>`` (so a complete result is checked with stats only)."""
    out: dict[str, dict[str, Any]] = {}
    for t in trials:
        tdir = layout.trial_dir(result_dir, t)
        data = (tdir / layout.METRICS).read_bytes()
        out[f"{tdir.name}/{layout.METRICS}"] = file_record(data, tdir / layout.METRICS)
        listed = json.loads(data).get("files")
        if isinstance(listed, dict):
            for name, rec in sorted(listed.items()):
                out[f"{tdir.name}/{name}"] = rec
        else:  # a trial written by 0.1.0 lists none: its predictions files as they are (checked by the planner)
            out.update({k: v for k, v in legacy_trial_files(result_dir, t)[0].items() if k != f"{tdir.name}/{layout.METRICS}"})
    return out


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


def prepare_aggregation(n_trials: int = 2) -> None:
    """Import what aggregating ``n_trials`` trials needs (scipy takes seconds the first time; one trial has
    no interval and needs none) before the last trial is written, so that the window between the last
    ``metrics.json`` and ``results.json`` stays short."""
    if n_trials > 1:
        import scipy.stats  # noqa: F401


def write_results(result_dir: Path, record: dict[str, Any], trials: list[int]) -> dict[str, Any]:
    """Aggregate ``trials`` and write ``results.json`` (the completion marker), last.

    ``record`` holds the result's header (fingerprint, model, task setting, params, repro ...);
    each sub-result gets its task's ``preferred_metric`` (from the trials' info); ``files`` lists the
    trials' files with their sizes (see :func:`trial_files`)."""
    results = aggregate(result_dir, trials)
    first = read_json(layout.trial_dir(result_dir, trials[0]) / layout.METRICS) or {}
    for sub, name in ((first.get("info") or {}).get("preferred_metric") or {}).items():
        if sub in results and isinstance(name, str):
            results[sub]["preferred_metric"] = name
    data = {**record, "trials": list(trials), "results": results, "files": trial_files(result_dir, trials)}
    write_bytes(result_dir / layout.RESULTS, json_bytes(data))
    return data


def aggregate(result_dir: Path, trials: list[int]) -> dict[str, dict[str, Any]]:
    """Combine ``trial<t>/metrics.json`` of ``trials`` into per-subresult, per-metric summaries (of
    the metrics numeric in every trial; other values -- sacrebleu signatures -- are kept as they
    are when the trials agree, else as the list of the trials' values)."""
    per_trial = [read_json(layout.trial_dir(result_dir, t) / layout.METRICS)["metrics"] for t in trials]
    out: dict[str, dict[str, Any]] = {}
    for subkey in per_trial[0]:
        out[subkey] = {}
        for metric in per_trial[0][subkey]:
            values = [(m.get(subkey) or {}).get(metric) for m in per_trial]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                out[subkey][metric] = summarize([float(v) for v in values])
            else:  # signatures and other non-numbers: kept once, or per trial where trials differ
                out[subkey][metric] = values[0] if all(v == values[0] for v in values) else values
    return out

"""Optional export of results to MLflow (off by default): ``fewshot-eval report results/ --mlflow URI``.

One MLflow run per result dir, in the experiment ``fewshot-eval`` (or ``experiment``):

* params: model, task setting, nshot, run_name, result_dir and the job's params from results.json
  (values cut to MLflow's 500 characters);
* metrics: ``<task>.<metric>`` (the mean) and ``<task>.<metric>.std`` for every metric, plus
  ``<task>.preferred`` (the task's preferred metric);
* tags: the fingerprint, the result dir name;
* artifact: the whole result dir, under ``result/``.

A result already logged to the experiment (same result dir, same ``finished_at``) is not logged
again, so exporting after every sweep adds only the new results.

MLflow is not a dependency: ``pip install mlflow-skinny`` (or ``mlflow``). A local file store
(``file:///path/mlruns``) works offline; MLflow 3 keeps that backend in maintenance mode and
refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``, which this export sets for ``file:`` URIs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from fewshot_eval.config import ConfigError


def _flat(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(d) if isinstance(d, (list, tuple)) else str(d)
    return out


def export_mlflow(files: Iterable[Path], uri: str, experiment: str = "fewshot-eval", skip: set[str] = frozenset()) -> tuple[list[str], int]:
    """Log every results.json (but those in ``skip``) as one run; returns the new run ids and how
    many results were logged before."""
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        import mlflow
    except ImportError:
        raise ConfigError("--mlflow needs MLflow: pip install mlflow-skinny (or mlflow)") from None

    mlflow.set_tracking_uri(uri)
    exp = mlflow.set_experiment(experiment)
    logged = {(r.data.params.get("result_dir"), r.data.tags.get("finished_at"))
              for r in mlflow.tracking.MlflowClient(uri).search_runs([exp.experiment_id], max_results=50000)}
    ids, before = [], 0
    for f in files:
        if str(f) in skip:
            continue
        f = Path(f)
        res = json.loads(f.read_text())
        if (str(f.parent.resolve()), str(res.get("finished_at"))) in logged:
            before += 1
            continue
        name = f"{res.get('model')}/{res.get('task_setting')}/{res.get('nshot')}shot"
        params = {"model": res.get("model"), "task_setting": res.get("task_setting"), "nshot": res.get("nshot"),
                  "run_name": res.get("run_name"), "result_dir": str(f.parent.resolve())}
        params.update({f"params.{k}": v for k, v in _flat(res.get("params", {})).items()})
        metrics: dict[str, float] = {}
        for sub, ms in (res.get("results") or {}).items():
            for m, s in ms.items():
                if isinstance(s, dict) and "mean" in s:
                    metrics[f"{sub}.{m}"] = float(s["mean"])
                    metrics[f"{sub}.{m}.std"] = float(s.get("std", 0.0))
            pref = ms.get("preferred_metric")
            if isinstance(pref, str) and isinstance(ms.get(pref), dict):
                metrics[f"{sub}.preferred"] = float(ms[pref]["mean"])
        with mlflow.start_run(run_name=name) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics(metrics)
            mlflow.set_tags({"fingerprint": str(res.get("fingerprint", ""))[:500], "result_dir_name": f.parent.name,
                           "finished_at": str(res.get("finished_at"))})
            mlflow.log_artifacts(str(f.parent), artifact_path="result")
            ids.append(run.info.run_id)
    return ids, before

"""Collect ``results.json`` files into one long table and a model-comparison pivot.

    fewshot-eval report results/                     # pivot of the preferred metric, printed
    fewshot-eval report results/ --out table.tsv     # long table (every metric) to TSV/CSV/JSONL
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from fewshot_eval.store import layout


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """Every results.json below the given dirs (or glob patterns, relative or absolute); moved-aside
    old results are left out. A path that does not exist and matches nothing is a ConfigError."""
    import glob

    from fewshot_eval.config import ConfigError

    found: list[Path] = []
    for p in paths:
        p = Path(p)
        roots = [p] if p.exists() else [Path(m) for m in sorted(glob.glob(str(p.expanduser())))]
        if not roots:
            raise ConfigError(f"{p}: no such file or directory, and no match as a glob pattern. Pass an output dir, a result dir or a pattern such as 'results/*/tiny_gpt2'.")
        for r in roots:
            if r.is_file() and r.name == layout.RESULTS:
                found.append(r)
            elif r.is_dir():
                found.extend(f for f in sorted(r.rglob(layout.RESULTS)) if ".old-" not in str(f.parent))
    return found


def preferred_metric(metrics: dict[str, Any]) -> str | None:
    pref = metrics.get("preferred_metric")
    if isinstance(pref, str) and pref in metrics:
        return pref
    for name in ("accuracy", "macro_f1", "bleu"):
        if name in metrics:
            return name
    numeric = [k for k, v in metrics.items() if isinstance(v, dict) and "mean" in v]
    return numeric[0] if numeric else None


def long_table(files: Iterable[Path]) -> pd.DataFrame:
    """One row per (result, sub-result, metric): mean, std, 95% CI and the settings that tell results apart."""
    rows = []
    for f in files:
        res = json.loads(f.read_text())
        params = res.get("params", {})
        for sub, metrics in res.get("results", {}).items():
            pref = preferred_metric(metrics)
            for metric, s in metrics.items():
                if not (isinstance(s, dict) and "mean" in s):
                    continue
                rows.append(
                    {
                        "run_name": res.get("run_name"),
                        "model": res.get("model"),
                        "task_setting": res.get("task_setting"),
                        "result": sub,
                        "nshot": res.get("nshot"),
                        "metric": metric,
                        "preferred": metric == pref,
                        "mean": s["mean"],
                        "std": s["std"],
                        "ci95_low": s["ci95"][0],
                        "ci95_high": s["ci95"][1],
                        "trials": len(s.get("per_trial", [])),
                        "scoring": params.get("scoring"),
                        "calibrator": params.get("calibrator"),
                        "predictor": params.get("predictor"),
                        "wall_time_s": res.get("wall_time_s"),
                        "result_dir": str(f.parent),
                    }
                )
    return pd.DataFrame(rows)


def pivot(df: pd.DataFrame, with_std: bool = True) -> pd.DataFrame:
    """Preferred metric, mean (± std), rows = task setting / result / nshot / metric, columns = model."""
    if df.empty:
        return df
    d = df[df["preferred"]].copy()
    d["value"] = d.apply(lambda r: f"{r['mean']:.2f} ± {r['std']:.2f}" if with_std else f"{r['mean']:.2f}", axis=1)
    index = ["task_setting", "result", "nshot", "metric", "scoring", "calibrator"]
    d[["scoring", "calibrator"]] = d[["scoring", "calibrator"]].fillna("-")
    return d.pivot_table(index=index, columns="model", values="value", aggfunc="first").fillna("")


def write_table(df: pd.DataFrame, out: Path) -> None:
    from fewshot_eval.store.atomic import write_text

    if out.suffix == ".csv":
        write_text(out, df.to_csv(index=False))
    elif out.suffix == ".jsonl":
        write_text(out, df.to_json(orient="records", lines=True))
    else:
        write_text(out, df.to_csv(index=False, sep="\t"))

"""Collect ``results.json`` files into long tables.

    fewshot-eval report results/                     # pivot of the preferred metric, printed
    fewshot-eval report results/ --out table.tsv     # summary table (every metric) to TSV/CSV/JSONL
    fewshot-eval report results/ --long all.csv      # the canonical long table: one row per trial x metric

A results.json that cannot be read (bad JSON, missing keys) is listed with its path on stderr
and skipped (:func:`load_results`); results of 0.1.0, which carry no preferred metric, take it
from their trials' metrics.json, else accuracy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import pandas as pd

from fewshot_eval.store import layout
from fewshot_eval.store.status import foreign

# results.json params that cannot change the numbers (not in identity.json)
NOT_IDENTITY = ("batch_size", "device", "num_trials", "allowed_nshot")
# model-side settings (row levels of a table when they differ); the rest are task-side (columns)
MODEL_SETTINGS = ("weights", "revision", "predictor", "dtype", "max_length")


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
            raise ConfigError(f"{p}: no such file or directory, and no match as a glob pattern. "
                              f"Pass an output dir, a result dir or a pattern such as 'results/*/tiny_gpt2'.")
        for r in roots:
            if r.is_file() and r.name == layout.RESULTS:
                found.append(r)
            elif r.is_dir():
                found.extend(f for f in sorted(r.rglob(layout.RESULTS)) if ".old-" not in str(f.parent))
    seen: set[Path] = set()
    return [f for f in found if not (f.resolve() in seen or seen.add(f.resolve()))]  # type: ignore[func-returns-value]


def _warn(msg: str) -> None:
    print(f"fewshot-eval: warning: {msg}", file=sys.stderr)


def read_result(f: Path) -> dict[str, Any]:
    """The parsed results.json; ValueError with a short reason when it is not a usable result."""
    try:
        res = json.loads(f.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot be read ({e.strerror or e})") from None
    except ValueError as e:
        raise ValueError(f"is not valid JSON ({e})") from None
    if not isinstance(res, dict):
        raise ValueError("is not a JSON object")
    missing = [k for k in ("model", "task_setting", "nshot", "results") if k not in res]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)} (not a complete fewshot-eval result)")
    if not isinstance(res["results"], dict):
        raise ValueError("'results' is not a mapping")
    why = foreign(f.parent, res)
    if why:  # a copy of another result's numbers: never shown as this one's
        raise ValueError(f"{why}; not shown (the next sweep over it recomputes it; fewshot-eval verify checks a whole tree)")
    for sub, metrics in res["results"].items():
        if not isinstance(metrics, dict):
            raise ValueError(f"results[{sub!r}] is not a mapping")
        for name, s in metrics.items():  # strings (signatures) and other non-summaries are not metrics: skipped
            if isinstance(s, dict) and "mean" in s and (not isinstance(s["mean"], (int, float)) or isinstance(s["mean"], bool)):
                raise ValueError(f"results[{sub!r}][{name!r}] has no numeric mean")
    return res


def load_results(files: Iterable[Path], warn: Callable[[str], None] = _warn) -> list[tuple[Path, dict[str, Any]]]:
    """(path, results.json) of every readable result; the others are reported through ``warn`` and skipped."""
    out = []
    for f in files:
        try:
            out.append((Path(f), read_result(Path(f))))
        except ValueError as e:
            warn(f"skipped {f}: {e}")
    return out


def preferred_metric(metrics: dict[str, Any], fallback: Optional[str] = None) -> str | None:
    pref = metrics.get("preferred_metric")
    if isinstance(pref, str) and pref in metrics:
        return pref
    if fallback and fallback in metrics:
        return fallback
    for name in ("accuracy", "macro_f1", "bleu"):
        if name in metrics:
            return name
    numeric = [k for k, v in metrics.items() if isinstance(v, dict) and "mean" in v]
    return numeric[0] if numeric else None


def _trial_preferred(rdir: Path, trials: list[Any]) -> dict[str, str]:
    """Older results (0.1.0): the preferred metric per sub-result from a trial's metrics.json info."""
    for t in trials or [0]:
        m = _read_json(layout.trial_dir(rdir, int(t)) / layout.METRICS) if str(t).isdigit() else None
        pref = ((m or {}).get("info") or {}).get("preferred_metric") if isinstance(m, dict) else None
        if isinstance(pref, dict):
            return {str(k): str(v) for k, v in pref.items()}
    return {}


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _scalar(v: Any) -> Any:
    """Settings as table values: dicts and lists as compact JSON."""
    return json.dumps(v, sort_keys=True, separators=(",", ":")) if isinstance(v, (dict, list)) else v


def settings(rdir: Path, res: dict[str, Any]) -> dict[str, Any]:
    """Every setting that can change the numbers: identity.json's params and model weights/revision
    (results.json's params minus batch size, device ... when identity.json is missing)."""
    ident = _read_json(rdir / layout.IDENTITY)
    params = res.get("params") if isinstance(res.get("params"), dict) else {}
    if isinstance(ident, dict) and isinstance(ident.get("params"), dict):
        out = {k: _scalar(v) for k, v in ident["params"].items()}
        model = ident.get("model") if isinstance(ident.get("model"), dict) else {}
    else:
        out = {k: _scalar(v) for k, v in params.items() if k not in NOT_IDENTITY}
        model = {}
    out["weights"] = _scalar(model.get("weights"))
    out["revision"] = _scalar(model.get("revision"))
    for k, v in model.items():  # model fields added to the identity after 0.1.0
        out.setdefault(str(k), _scalar(v))
    return out


def split_sub(sub: str, tasks: list[str]) -> tuple[str, str | None, str | None]:
    """``copa_demo.default`` -> (copa_demo, default, None); ``pawsx_demo.default.de`` -> (pawsx_demo, default, de)."""
    task = next((t for t in sorted(tasks, key=len, reverse=True) if sub == t or sub.startswith(t + ".")), None)
    if task is None:
        task, _, rest = sub.partition(".")
    else:
        rest = sub[len(task) + 1:]
    template, _, lang = rest.partition(".")
    return task, template or None, lang or None


def _base_rows(f: Path, res: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    rdir = f.parent
    prefs = {} if all("preferred_metric" in m for m in res["results"].values()) else _trial_preferred(rdir, res.get("trials") or [])
    base = {
        "run_name": res.get("run_name"),
        "model": res.get("model"),
        "task_setting": res.get("task_setting"),
        "nshot": res.get("nshot"),
    }
    return base, prefs, settings(rdir, res)


def _is_preferred(metric: str, pref: Optional[str]) -> bool:
    """The preferred metric and its uncalibrated twin (``accuracy`` / ``accuracy_raw``)."""
    return pref is not None and metric in (pref, f"{pref}_raw")


def _summaries(loaded: Iterable[tuple[Path, dict[str, Any]]]) -> Iterator[tuple[Path, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """Per (result, sub-result, metric with a summary): (file, results.json, base columns, settings, the
    sub-result's columns incl. metric / preferred / signature (``<metric>_signature``, how sacrebleu
    computed it; None for most metrics) / summary ``s``). Values that are not summaries (signature
    strings, lists) are no metrics."""
    for f, res in loaded:
        base, prefs, sett = _base_rows(f, res)
        tasks = [str(t) for t in res.get("tasks") or []]
        for sub, metrics in res["results"].items():
            pref = preferred_metric(metrics, prefs.get(sub))
            task, template, lang = split_sub(sub, tasks)
            for metric, s in metrics.items():
                if isinstance(s, dict) and isinstance(s.get("mean"), (int, float)) and not isinstance(s["mean"], bool):
                    sig = metrics.get(f"{metric}_signature")
                    cols = {"result": sub, "task": task, "template": template, "language": lang, "metric": metric,
                            "preferred": _is_preferred(metric, pref), "signature": sig if isinstance(sig, str) else None}
                    yield f, res, base, sett, {**cols, "s": s}


def long_table(files: Iterable[Path], loaded: Optional[list[tuple[Path, dict[str, Any]]]] = None) -> pd.DataFrame:
    """One row per (result, sub-result, metric): mean, std, 95% CI and the settings that tell results apart."""
    rows = []
    for f, res, base, sett, cols in _summaries(loaded if loaded is not None else load_results(files)):
        s = cols.pop("s")
        ci = s.get("ci95") if isinstance(s.get("ci95"), list) and len(s["ci95"]) == 2 else [None, None]
        rows.append({
            **base, **cols,
            "mean": s["mean"], "std": s.get("std"), "ci95_low": ci[0], "ci95_high": ci[1],
            "trials": len(s.get("per_trial") or []) or 1,
            **{k: v for k, v in sett.items() if k not in ("weights", "revision")},
            "weights": sett["weights"], "revision": sett["revision"],
            "wall_time_s": res.get("wall_time_s"), "result_dir": str(f.parent),
        })
    return pd.DataFrame(rows)


def trial_table(loaded: list[tuple[Path, dict[str, Any]]]) -> pd.DataFrame:
    """The canonical long table: one row per result x sub-result (task, template, language) x trial x metric."""
    rows = []
    for f, res, base, sett, cols in _summaries(loaded):
        s = cols.pop("s")
        trial_ids = list(res.get("trials") or [])
        per = s.get("per_trial") if isinstance(s.get("per_trial"), list) and s.get("per_trial") else [s["mean"]]
        ids = trial_ids if len(trial_ids) == len(per) else list(range(len(per)))
        version = (res.get("repro") or {}).get("version") if isinstance(res.get("repro"), dict) else None
        for t, v in zip(ids, per):
            rows.append({
                **base, **{k: v2 for k, v2 in cols.items() if k not in ("metric", "preferred")},
                "trial": t, "metric": cols["metric"], "value": v, "preferred": cols["preferred"],
                **sett, "version": version, "result_dir": str(f.parent),
            })
    return pd.DataFrame(rows)


TABLE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet", ".tsv")


def check_table_path(out: Path, option: str) -> None:
    """``out`` ends in a table format :func:`write_table` writes (checked before any work)."""
    from fewshot_eval.config import ConfigError, closest

    if out.suffix not in TABLE_SUFFIXES:
        raise ConfigError(f"{option} {out}: unknown table format '{out.suffix or '(no suffix)'}'{closest(out.suffix, TABLE_SUFFIXES)}. "
                          f"Name the file with one of {', '.join(TABLE_SUFFIXES)} (e.g. {option} {out.with_suffix('.csv')}).")


def write_table(df: pd.DataFrame, out: Path) -> None:
    """.csv, .jsonl, .json, .parquet (needs pyarrow), .tsv."""
    from fewshot_eval.store.atomic import write_text

    if out.suffix == ".csv":
        write_text(out, df.to_csv(index=False))
    elif out.suffix == ".jsonl":
        write_text(out, df.to_json(orient="records", lines=True))
    elif out.suffix == ".json":
        write_text(out, df.to_json(orient="records", indent=1))
    elif out.suffix == ".parquet":
        from fewshot_eval.config import ConfigError

        try:
            df.to_parquet(out, index=False)
        except ImportError as e:
            raise ConfigError(f"{out}: writing parquet needs pyarrow or fastparquet ({e}); use .csv or .jsonl") from None
    else:
        write_text(out, df.to_csv(index=False, sep="\t"))

"""Plots of the preferred metric: vs nshot, vs checkpoint step, and bars per task setting.

    fewshot-eval report results/ --plots plots/        # PNG + SVG per plot, deterministic names

* ``nshot__<task setting>__<task>.{png,svg}``: the task's preferred metric vs nshot, a line per
  model, the trial spread shaded (mean ± std, or the 95% CI of results.json with ``spread="ci"``).
* ``step__<task setting>__<task>.{png,svg}``: vs checkpoint step, for model settings named
  ``<model>__step<N>`` (a line per base model and nshot); none when no model is named so.
* ``bars__<task setting>__<nshot>shot.{png,svg}``: one bar per model for each task of a task
  setting, at one nshot (the largest one of that task setting unless asked), error bars = spread.

matplotlib is imported lazily (Agg backend), so nothing else pays for it.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

STEP = re.compile(r"^(?P<base>.+)__step(?P<step>\d+)$")
FORMATS = ("png", "svg")


@dataclass
class Plot:
    """One figure: its kind (nshot | step | bars), title and file stem; ``files`` once written."""

    kind: str
    title: str
    stem: str
    fig: Any = field(repr=False, default=None)
    files: dict[str, Path] = field(default_factory=dict)

    def data_uri(self, fmt: str = "png") -> str:
        import base64

        return f"data:{'image/svg+xml' if fmt == 'svg' else 'image/png'};base64," + base64.b64encode(render(self.fig, fmt)).decode()


def load(files: Iterable[Path]) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The long table of the readable files, and (path, reason) of each one skipped (unreadable,
    not JSON, or without results) -- never an exception for a corrupt file."""
    from fewshot_eval.report import collect

    files = [Path(f) for f in files]
    try:  # the common case: every file reads
        df = collect.long_table(files)
        done = set() if df.empty else set(df["result_dir"].map(lambda d: str(Path(d) / "results.json")))
        if not set(map(str, files)) - done:
            return df, []
    except Exception:
        pass
    check = getattr(collect, "read_result", None)  # a ValueError with a short reason, where collect has it
    frames, skipped = [], []
    for f in files:
        try:
            if check is not None:
                check(f)
            else:
                json.loads(f.read_text(encoding="utf-8"))
            df = collect.long_table([f])
        except Exception as e:  # a corrupt or partial results.json is listed, not fatal
            skipped.append((str(f), f"{type(e).__name__}: {e}".splitlines()[0][:200]))
            continue
        if df.empty:
            skipped.append((str(f), "no metrics in it"))
        else:
            frames.append(df)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), skipped


# long-table columns that are not settings (everything else -- scoring, calibrator, n_eval_samples,
# weights, ... -- is a setting that can change the numbers)
NOT_SETTINGS = {"run_name", "model", "task_setting", "nshot", "result", "task", "template", "language", "metric", "preferred",
                "mean", "std", "ci95_low", "ci95_high", "trials", "wall_time_s", "result_dir", "predictor", "version", "signature"}


def _metric_label(metrics: Iterable[str]) -> str:
    """The y-axis label: the metrics, each with its direction where higher is not better ('word_perplexity, lower is better')."""
    from fewshot_eval.report.direction import HIGHER, describe, direction

    return ", ".join(m if direction(m)[0] == HIGHER else f"{m} ({describe(m)})" for m in sorted(map(str, metrics)))


def preferred(df: pd.DataFrame) -> pd.DataFrame:
    """The preferred-metric rows, with ``variant`` (the settings that differ between results of one
    model on one task, e.g. ``scoring=mean calibrator=average_option``; "" when none do) and
    ``series`` (model, variant, and the metric where a task has several preferred ones, such as
    ``accuracy`` and ``accuracy_raw``): results that differ in a setting are never merged."""
    if df.empty:
        return df
    d = df[df["preferred"].astype(bool)].copy()
    if d.empty:
        return d
    for c in ("mean", "std", "ci95_low", "ci95_high"):
        d[c] = pd.to_numeric(d[c], errors="coerce")
    d["std"] = d["std"].fillna(0.0)
    d["ci95_low"] = d["ci95_low"].fillna(d["mean"])
    d["ci95_high"] = d["ci95_high"].fillna(d["mean"])
    d["nshot"] = pd.to_numeric(d["nshot"], errors="coerce").fillna(-1).astype(int)
    d["model"] = d["model"].astype(str)
    settings = [c for c in d.columns if c not in NOT_SETTINGS]
    d[settings] = d[settings].astype(object).where(d[settings].notna(), "-").astype(str)
    keys = ["task_setting", "result", "model"]
    nunique = d.groupby(keys)[settings].nunique() if settings else None
    varying = {k: [c for c in settings if row[c] > 1] for k, row in nunique.iterrows()} if nunique is not None else {}
    d["variant"] = [" ".join(f"{c}={r[c]}" for c in varying.get(tuple(r[k] for k in keys), [])) for _, r in d.iterrows()]
    several = d.groupby(["task_setting", "result"])["metric"].transform("nunique") > 1
    d["series"] = [" ".join(x for x in (m, v, met if sev else "") if x) for m, v, met, sev in zip(d["model"], d["variant"], d["metric"], several)]
    return d.sort_values(["task_setting", "result", "series", "nshot"], kind="stable").reset_index(drop=True)


def _safe(s: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(s))


def _band(d: pd.DataFrame, spread: str) -> tuple[pd.Series, pd.Series]:
    if spread == "ci":
        return d["ci95_low"], d["ci95_high"]
    return d["mean"] - d["std"], d["mean"] + d["std"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "fewshot-eval"  # stable ids: the same data gives the same SVG
    return plt


def _spread_label(spread: str) -> str:
    return "95% CI" if spread == "ci" else "± std"


def _colors(labels: Iterable[str]) -> dict[str, str]:
    """One colour per label, the same in every plot of a report."""
    return {s: f"C{i % 10}" for i, s in enumerate(sorted(set(labels)))}


STYLES = ("-", "--", ":", "-.")
HATCHES = ("", "//", "..", "xx")


def _lines(plt, d: pd.DataFrame, x: str, label: str, color_by: str, title: str, xlabel: str, spread: str, colors: dict[str, str]):
    """A line per ``label``; its colour is that of its ``color_by`` value (the model, the same in
    every plot), several lines of one model (variants, metrics, nshot) differ by line style."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    seen: dict[str, int] = {}
    for name, g in d.groupby(label, sort=True):
        g = g.sort_values(x)
        key = str(g[color_by].iloc[0])
        color, style = colors.get(key, "C0"), STYLES[seen.get(key, 0) % len(STYLES)]
        seen[key] = seen.get(key, 0) + 1
        lo, hi = _band(g, spread)
        ax.plot(g[x], g["mean"], marker="o", color=color, linestyle=style, label=str(name))
        if len(g) > 1:
            ax.fill_between(g[x], lo, hi, color=color, alpha=0.2, linewidth=0)
        else:
            ax.errorbar(g[x], g["mean"], yerr=[g["mean"] - lo, hi - g["mean"]], color=color, capsize=4, linewidth=1)
    metric = _metric_label(d["metric"].unique())
    ax.set(title=title, xlabel=xlabel, ylabel=f"{metric} (shaded: {_spread_label(spread)})")
    ax.set_xticks(sorted(d[x].unique()))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def figures(df: pd.DataFrame, spread: str = "std", bar_nshot: int | None = None) -> list[Plot]:
    """Every plot of the long table ``df`` (as from collect.long_table), in a fixed order."""
    d = preferred(df)
    if d.empty:
        return []
    plt = _plt()
    plots: list[Plot] = []
    colors = _colors(d["model"])
    for (ts, res), g in d.groupby(["task_setting", "result"], sort=True):
        plots.append(Plot("nshot", f"{res} ({ts}) vs nshot", f"nshot__{_safe(ts)}__{_safe(res)}",
                          _lines(plt, g, "nshot", "series", "model", f"{res} ({ts})", "nshot", spread, colors)))
    steps = d.assign(m=d["model"].map(lambda m: STEP.match(str(m))))
    steps = steps[steps["m"].notna()]
    if not steps.empty:
        steps = steps.assign(base=steps["m"].map(lambda m: m["base"]), step=steps["m"].map(lambda m: int(m["step"])))
        steps["label"] = steps.apply(lambda r: f"{r['base']} {r['nshot']}-shot", axis=1)
        for (ts, res), g in steps.groupby(["task_setting", "result"], sort=True):
            plots.append(Plot("step", f"{res} ({ts}) vs checkpoint step", f"step__{_safe(ts)}__{_safe(res)}",
                              _lines(plt, g, "step", "label", "base", f"{res} ({ts})", "checkpoint step", spread, _colors(steps["base"]))))
    for ts, g in d.groupby("task_setting", sort=True):
        n = bar_nshot if bar_nshot is not None and bar_nshot in set(g["nshot"]) else int(g["nshot"].max())
        g = g[g["nshot"] == n]
        results, series = sorted(g["result"].unique()), sorted(g["series"].unique())
        fig, ax = plt.subplots(figsize=(max(6.4, 1.2 * len(results) * max(1, len(series)) / 2), 4.0), dpi=100)
        width = 0.8 / max(1, len(series))
        seen: dict[str, int] = {}
        for i, s in enumerate(series):
            gs = g[g["series"] == s].set_index("result").reindex(results)
            model = str(g.loc[g["series"] == s, "model"].iloc[0])
            hatch = HATCHES[seen.get(model, 0) % len(HATCHES)]
            seen[model] = seen.get(model, 0) + 1
            lo, hi = _band(gs, spread)
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(results))]
            ax.bar(xs, gs["mean"].fillna(0), width, color=colors[model], hatch=hatch, edgecolor="white" if hatch else None, label=s,
                   yerr=[(gs["mean"] - lo).fillna(0), (hi - gs["mean"]).fillna(0)], capsize=3)
        ax.set_xticks(range(len(results)), results)
        metric = _metric_label(g["metric"].unique())
        ax.set(title=f"{ts}, {n}-shot", ylabel=f"{metric} (error bars: {_spread_label(spread)})")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        plots.append(Plot("bars", f"{ts} at {n}-shot", f"bars__{_safe(ts)}__{n}shot", fig))
    return plots


def render(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else {"Software": None})
    return buf.getvalue()


def write_plots(plots: list[Plot], out_dir: Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write every plot as ``<stem>.<fmt>`` into ``out_dir``; returns the paths written."""
    from fewshot_eval.store.atomic import ensure_dir, write_bytes

    ensure_dir(out_dir)
    written = []
    for p in plots:
        for fmt in formats:
            path = out_dir / f"{p.stem}.{fmt}"
            write_bytes(path, render(p.fig, fmt))
            p.files[fmt] = path
            written.append(path)
    return written


def close(plots: list[Plot]) -> None:
    if plots:
        plt = _plt()
        for p in plots:
            plt.close(p.fig)

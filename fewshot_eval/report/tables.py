"""Comparison tables from the long trial table (:func:`fewshot_eval.report.collect.trial_table`).

A cell is the preferred metric of one (model setting, task setting, task, template, language,
nshot) as mean ± std over trials ("61.2" for a single trial, "(n=2)" where the number of trials
differs from the table's usual one). Rows and columns are levels of the long table (``--rows``,
``--cols``). Settings that change the numbers (scoring, n_eval_samples, calibrator, weights,
revision ...) are never merged into one cell: each one whose values differ inside a cell becomes
an extra level (model-side ones in the rows, the others in the columns), or ``strict`` refuses
with the list. Raw and calibrated numbers are separate metrics (``accuracy_raw`` / ``accuracy``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import pandas as pd

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.metrics.prediction_rows import is_correct
from fewshot_eval.report import direction as _dir
from fewshot_eval.report.collect import MODEL_SETTINGS

ROWS = ["model"]
COLS = ["task_setting", "task", "template", "language", "nshot", "metric"]
# columns of the trial table that are not settings
NOT_SETTINGS = {"run_name", "model", "task_setting", "nshot", "result", "task", "template", "language", "trial",
                "metric", "value", "preferred", "version", "result_dir", "signature"}
LABELS = ("missing", "pending", "running", "failed", "stale", "n/a", "error")


def text(v: Any) -> str:
    """One spelling per value, shared by results and planned jobs: None -> '-', 2.0 -> '2'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)


@dataclass
class Cell:
    values: dict[Any, float]  # trial -> value
    result_dir: str = ""
    result: str = ""
    metric: str = ""
    seed: str = "-"

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        v = list(self.values.values())
        return sum(v) / len(v)

    @property
    def std(self) -> float:
        v = list(self.values.values())
        if len(v) < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


@dataclass
class Table:
    rows: list[str]
    cols: list[str]
    cells: dict[tuple[tuple[str, ...], tuple[str, ...]], Cell]
    labels: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = field(default_factory=dict)  # missing, failed ...
    added: list[str] = field(default_factory=list)  # setting levels added because they differ
    notes: list[str] = field(default_factory=list)
    averages: dict[tuple[tuple[str, ...], tuple[str, ...]], float] = field(default_factory=dict)


def differing_settings(d: pd.DataFrame, key: Sequence[str]) -> list[str]:
    """Setting columns (and run_name) that take more than one value inside some cell of ``key``."""
    cand = [c for c in d.columns if c not in NOT_SETTINGS and c not in key] + (["run_name"] if "run_name" not in key else [])
    if d.empty or not cand:
        return []
    g = d.groupby(list(key), dropna=False)[cand].nunique(dropna=False)
    return [c for c in cand if (g[c] > 1).any()]


def build(trials: pd.DataFrame, rows: Sequence[str] = ROWS, cols: Sequence[str] = COLS, strict: bool = False) -> Table:
    """The cells of the preferred metric, with every differing setting as its own level."""
    rows, cols = list(rows), list(cols)
    known = set(trials.columns) if not trials.empty else set(NOT_SETTINGS)
    unknown = [k for k in rows + cols if k not in known]
    if unknown:
        raise ConfigError(f"--rows/--cols: no column {', '.join(unknown)} in the long table; columns: {', '.join(sorted(known - {'value', 'preferred'}))}")
    if trials.empty:
        return Table(rows, cols, {})
    d = trials[trials["preferred"]].copy()
    for c in d.columns:
        if c not in ("value", "preferred"):
            d[c] = d[c].map(text)
    added = differing_settings(d, rows + cols)
    if added and strict:
        raise ConfigError(f"--strict: results that differ in {', '.join(added)} would share cells; add them to --rows/--cols or select fewer results")
    for k in added:
        (rows if k in MODEL_SETTINGS or k == "run_name" else cols).append(k)
    for level, where in (("result", cols), ("result_dir", rows)):  # sub-results pivoted away; copies of one result
        if level not in rows + cols and (d.groupby(rows + cols + ["trial"], dropna=False)[level].nunique() > 1).any():
            where.append(level)
            added.append(level)
    cells: dict[tuple[tuple[str, ...], tuple[str, ...]], Cell] = {}
    for rec in d.to_dict("records"):
        key = (tuple(rec[k] for k in rows), tuple(rec[k] for k in cols))
        cell = cells.setdefault(key, Cell({}, rec["result_dir"], rec["result"], rec["metric"], rec.get("seed", "-")))
        cell.values[rec["trial"]] = float(rec["value"])
    t = Table(rows, cols, cells, added=added)
    if added:
        t.notes.append(f"settings that differ, shown as their own rows/columns: {', '.join(added)}")
    t.notes.extend(direction_notes(sorted({c.metric for c in cells.values()})))
    t.notes.extend(signature_notes(d))
    return t


def direction_notes(metrics: Sequence[str]) -> list[str]:
    """One note per metric of the table that is not higher-is-better (perplexities, ideal-50 scores)."""
    return [f"{m}: {_dir.describe(m)}" for m in metrics if _dir.direction(m)[0] != _dir.HIGHER]


def signature_notes(d: pd.DataFrame) -> list[str]:
    """How the table's signed metrics (sacrebleu's BLEU / chrF) were computed: one note per
    (metric, signature), naming the sub-results when the table holds several signatures of it."""
    if "signature" not in d.columns:
        return []
    sigs = d[d["signature"].map(lambda v: isinstance(v, str) and v not in ("", "-"))]
    out = []
    for metric, g in sigs.groupby("metric", sort=True):
        distinct = sorted(set(g["signature"]))
        for sig in distinct:
            where = sorted(set(g.loc[g["signature"] == sig, "result"]))
            out.append(f"{metric} signature {sig}" + (f" ({', '.join(where)})" if len(distinct) > 1 else ""))
    return out


def fmt(cell: Cell, usual_n: Optional[int], with_std: bool = True, digits: int = 2) -> str:
    s = f"{cell.mean:.{digits}f}"
    if with_std and cell.n > 1:
        s += f" ± {cell.std:.{digits}f}"
    if usual_n is not None and cell.n > 1 and cell.n != usual_n:
        s += f" (n={cell.n})"
    return s


def usual_trials(t: Table) -> Optional[int]:
    """The most common number of trials of the multi-trial cells, when they differ within the table
    (else None: no cell shows its n). Single-trial cells (0-shot) show no ±, which says it."""
    ns = Counter(c.n for c in t.cells.values() if c.n > 1)
    return ns.most_common(1)[0][0] if len(ns) > 1 else None


def add_averages(t: Table) -> None:
    """Per row, the mean of the cell means over the tasks / templates / languages of each task
    setting (same nshot, metric and settings), and over all task settings ('(all)', metric
    'preferred', or 'preferred_raw' for the uncalibrated numbers), as extra columns ``avg`` -- each only where it averages more than one cell."""
    over = [i for i, c in enumerate(t.cols) if c in ("task", "template", "language", "result")]
    ts = t.cols.index("task_setting") if "task_setting" in t.cols else None
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[float]] = {}
    for (r, c), cell in t.cells.items():
        if over:
            gc = tuple("avg" if i in over else v for i, v in enumerate(c))
            groups.setdefault((r, gc), []).append(cell.mean)
        if ts is not None:
            pooled = _dir.ranked_as_percent(cell.metric, cell.result)  # perplexities, 0-1 scales: only with their own metric
            allc = tuple("avg" if i in over else "(all)" if i == ts else (("preferred_raw" if v.endswith("_raw") else "preferred")
                         if t.cols[i] == "metric" and pooled else v) for i, v in enumerate(c))
            groups.setdefault((r, allc), []).append(cell.mean)
    for key, vals in groups.items():
        if len(vals) > 1:
            t.averages[key] = sum(vals) / len(vals)
    # an "(all)" column that merely repeats one task setting's average is left out
    for (r, c) in [k for k in t.averages if ts is not None and k[1][ts] == "(all)"]:
        n_ts = {cc[ts] for (rr, cc) in t.cells if rr == r and all(cc[i] == c[i] for i in range(len(c)) if i not in over and i != ts and t.cols[i] != "metric")}
        if len(n_ts) < 2:
            del t.averages[(r, c)]


def add_labels(t: Table, jobs: Iterable[Any], label_of: Any) -> None:
    """Every planned job that has no cell gets its label (missing, pending, failed ...) in the cells
    of its task setting and nshot (a column of its own when the table has none).

    Columns are looked up through an index on the values a job can match (linear in the jobs: a
    sweep of 10,000 planned cells is labelled in well under a second)."""
    col_keys = list(dict.fromkeys([c for (_, c) in t.cells] + [c for (_, c) in t.labels]))
    known = set(col_keys)
    index: dict[tuple[int, ...], dict[tuple[str, ...], list[tuple[str, ...]]]] = {}

    def columns(pos: tuple[int, ...], key: tuple[str, ...]) -> list[tuple[str, ...]]:
        if pos not in index:
            by: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
            for c in col_keys:
                by.setdefault(tuple(c[i] for i in pos), []).append(c)
            index[pos] = by
        return index[pos].get(key, [])

    for job in jobs:
        label = label_of(job)
        if label is None:
            continue
        u = job.unit
        values = {"model": u.model_key, "task_setting": u.task_key, "nshot": text(u.nshot), "run_name": text(u.params.get("run_name"))}
        values.update({k: text(v) for k, v in (u.params or {}).items()})
        values["weights"] = text((u.model or {}).get("weights"))
        values["revision"] = text((u.model or {}).get("revision"))
        row = tuple(values.get(k, "*") for k in t.rows)
        pos = tuple(i for i, k in enumerate(t.cols) if k in values and k != "run_name")
        matched = columns(pos, tuple(values[t.cols[i]] for i in pos))
        for c in matched:
            if (row, c) not in t.cells:
                t.labels[(row, c)] = label
        if not matched:
            c = tuple(values.get(k, "-") if k in ("task_setting", "nshot") or k in t.added else "*" if k == "task" else "-" for k in t.cols)
            t.labels[(row, c)] = label
            if c not in known:  # a new column: later jobs may match it
                known.add(c)
                col_keys.append(c)
                for p, by in index.items():
                    by.setdefault(tuple(c[i] for i in p), []).append(c)


def frame(t: Table, with_std: bool = True, compare: Optional[str] = None) -> pd.DataFrame:
    """The table as a DataFrame of strings: row levels as the index, column levels as the columns
    (levels whose every value is '-' dropped)."""
    usual = usual_trials(t)
    values: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = dict(t.labels)
    if compare:
        values.update(compare_cells(t, compare))
    else:
        values.update({k: fmt(c, usual, with_std) for k, c in t.cells.items()})
    if compare:  # averages as deltas too
        mi = t.rows.index("model")
        ref_avg = {(r[:mi] + r[mi + 1:], c): v for (r, c), v in t.averages.items() if r[mi] == compare}
        for (r, c), v in t.averages.items():
            ref = ref_avg.get((r[:mi] + r[mi + 1:], c))
            values[(r, c)] = f"{v:.2f}" if r[mi] == compare else f"{v - ref:+.2f}" if ref is not None else f"{v:.2f} (no ref)"
    else:
        values.update({k: f"{v:.2f}" for k, v in t.averages.items()})
    if not values:
        return pd.DataFrame()
    row_keys = sorted({r for r, _ in values}, key=_order)
    col_keys = sorted({c for _, c in values}, key=_order)
    keep = [i for i in range(len(t.cols)) if any(c[i] != "-" for c in col_keys)] or [0]
    df = pd.DataFrame(
        [[values.get((r, c), "") for c in col_keys] for r in row_keys],
        index=pd.MultiIndex.from_tuples(row_keys, names=t.rows) if len(t.rows) > 1 else pd.Index([r[0] for r in row_keys], name=t.rows[0]),
        columns=pd.MultiIndex.from_tuples([tuple(c[i] for i in keep) for c in col_keys], names=[t.cols[i] for i in keep])
        if len(keep) > 1 else pd.Index([c[keep[0]] for c in col_keys], name=t.cols[keep[0]]),
    )
    return df


def _order(key: tuple[str, ...]) -> tuple:
    """Numbers as numbers (nshot 2 before 16), averages last."""
    out = []
    for v in key:
        if v in ("avg", "(all)"):
            out.append((2, 0, v))
        else:
            try:
                out.append((0, float(v), v))
            except ValueError:
                out.append((1, 0, v))
    return tuple(out)


# ---- compare ------------------------------------------------------------------------------
def compare_cells(t: Table, ref: str) -> dict[tuple[tuple[str, ...], tuple[str, ...]], str]:
    """Every other model's delta vs ``ref`` per cell: ``+3.20 ± 1.10 p=0.03*``. The spread is the std
    of the per-trial differences (paired: same trials and seed) or of both models' trials combined;
    the test is a paired t-test over trials (>= 2 shared trials) or McNemar's exact test over the
    examples of single-trial results; ``*`` marks p < 0.05."""
    mi = t.rows.index("model")
    refs = {(r[:mi] + r[mi + 1:], c): cell for (r, c), cell in t.cells.items() if r[mi] == ref}
    if not refs:
        models = sorted({r[mi] for r, _ in t.cells})
        raise ConfigError(f"--compare {ref}: no such model in the table; models: {', '.join(models)}")
    usual = usual_trials(t)
    out: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
    for (r, c), cell in t.cells.items():
        if r[mi] == ref:
            out[(r, c)] = fmt(cell, usual)
            continue
        rc = refs.get((r[:mi] + r[mi + 1:], c))
        if rc is None:
            out[(r, c)] = fmt(cell, usual) + " (no ref)"
            continue
        out[(r, c)] = delta_text(cell, rc)
    return out


def delta_text(a: Cell, b: Cell) -> str:
    """``+3.20 ± 1.10 p=0.03*``; for a metric where the sign does not say it (lower is better,
    an ideal value) ``(better)`` / ``(worse)`` follows."""
    delta, spread, p = delta_stats(a, b)
    s = f"{delta:+.2f}"
    if spread > 0:
        s += f" ± {spread:.2f}"
    if p is not None:
        s += f" p={p:.2g}" + ("*" if p < 0.05 else "")
    if _dir.direction(a.metric)[0] != _dir.HIGHER:
        verdict = _dir.better(a.metric, a.mean, b.mean)
        if verdict is not None:
            s += " (better)" if verdict else " (worse)"
    return s


def delta_stats(a: Cell, b: Cell) -> tuple[float, float, Optional[float]]:
    """(delta of the means, spread, p-value or None) of cell ``a`` vs reference ``b``."""
    delta = a.mean - b.mean
    shared = sorted(set(a.values) & set(b.values), key=str)
    p: Optional[float] = None
    if len(shared) >= 2 and a.seed == b.seed:
        diffs = [a.values[k] - b.values[k] for k in shared]
        m = sum(diffs) / len(diffs)
        spread = math.sqrt(sum((x - m) ** 2 for x in diffs) / (len(diffs) - 1))
        if spread > 0:
            from scipy.stats import ttest_rel

            p = float(ttest_rel([a.values[k] for k in shared], [b.values[k] for k in shared]).pvalue)
        else:
            p = 1.0 if m == 0 else 0.0
    else:
        spread = math.sqrt(a.std ** 2 + b.std ** 2)
        if a.n == 1 and b.n == 1:
            p = mcnemar(a, b)
    return delta, spread, p


def _label_metric(metric: str) -> bool:
    """A registered metric of (gold, predicted label) pairs: accuracy, macro_f1 ... (not perplexities,
    text overlap, row metrics or lm-eval's own), the only ones McNemar's test over examples fits."""
    m = _dir.registered(metric)
    return m is not None and m.kind == "choice" and m.over == "labels"


def _correct(rdir: str, result: str, trial: Any, metric: str) -> Optional[dict[str, bool]]:
    """id -> correct of one trial's predictions (the uncalibrated prediction for ``*_raw`` metrics);
    None for a metric that is not about labels or rows without a gold and a predicted label
    (generation, perplexity and lm-eval catalog rows)."""
    if not _label_metric(metric):
        return None
    f = Path(rdir) / f"trial{trial}" / f"{result}.predictions.jsonl"
    out: dict[str, bool] = {}
    try:
        with f.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if "gold" not in row or "pred" not in row or "loglikelihood" in row:
                    return None
                pred = row.get("pred_raw", row.get("pred")) if metric.endswith("_raw") else row.get("pred")
                out[str(row.get("id"))] = is_correct(pred, row.get("gold"))  # gold: a label, or a list of them
    except (OSError, ValueError, AttributeError):
        return None
    return out


def mcnemar(a: Cell, b: Cell) -> Optional[float]:
    """Exact McNemar test (binomial over the discordant examples) of two single-trial results."""
    ca = _correct(a.result_dir, a.result, next(iter(a.values)), a.metric)
    cb = _correct(b.result_dir, b.result, next(iter(b.values)), b.metric)
    if not ca or not cb:
        return None
    ids = set(ca) & set(cb)
    if not ids:
        return None
    only_a = sum(ca[i] and not cb[i] for i in ids)
    only_b = sum(cb[i] and not ca[i] for i in ids)
    if only_a + only_b == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


# ---- formats ------------------------------------------------------------------------------
def _flat_cols(df: pd.DataFrame) -> list[str]:
    """One header per column: its levels joined, '-' and repeats (task = task setting) left out."""
    out = []
    names = list(df.columns.names)
    plain = {"task_setting", "task", "template", "language", "metric", "result"}
    for c in df.columns if isinstance(df.columns, pd.MultiIndex) else [(c,) for c in df.columns]:
        words: list[str] = []
        for name, v in zip(names, map(str, c)):
            if v in ("-", "") or (words and words[-1] == v):
                continue
            words.append(v if name in plain or v in ("avg", "(all)", "*") else f"{v}-shot" if name == "nshot" else f"{name}={v}")
        out.append(" ".join(words))
    return out


def _flat_index(df: pd.DataFrame) -> list[str]:
    return [" / ".join(str(v) for v in (i if isinstance(i, tuple) else (i,))) for i in df.index]


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub pipe table; the header row names the column levels, '|' in values is escaped."""
    def esc(s: Any) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    names = [n for n in df.index.names if n] or ["model"]
    header = [" / ".join(names)] + _flat_cols(df)
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join(["---"] + ["---:"] * len(df.columns)) + "|"]
    for name, (_, row) in zip(_flat_index(df), df.iterrows()):
        lines.append("| " + " | ".join([esc(name)] + [esc(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(s: Any) -> str:
    s = str(s)
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"),
                 ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}")):
        s = s.replace(a, b)
    return s.replace("±", r"$\pm$")


def to_latex(df: pd.DataFrame, caption: Optional[str] = None) -> str:
    """A booktabs table (\\toprule, \\midrule, \\bottomrule; \\usepackage{booktabs})."""
    e = df.copy()
    e = e.map(_latex_escape) if hasattr(e, "map") else e.applymap(_latex_escape)
    e.index = e.index.map(lambda i: tuple(_latex_escape(v) for v in i) if isinstance(i, tuple) else _latex_escape(i))
    e.index.names = [_latex_escape(n) if n else n for n in df.index.names]
    e.columns = e.columns.map(lambda c: tuple(_latex_escape(v) for v in c) if isinstance(c, tuple) else _latex_escape(c))
    e.columns.names = [_latex_escape(n) if n else n for n in df.columns.names]
    styler = e.style
    return styler.to_latex(hrules=True, multicol_align="c", column_format="l" * e.index.nlevels + "r" * len(e.columns),
                           caption=caption, position_float="centering" if caption else None)


def render(df: pd.DataFrame, fmt_name: str) -> str:
    if fmt_name == "markdown":
        return to_markdown(df)
    if fmt_name == "latex":
        return to_latex(df)
    if fmt_name == "csv":
        flat = pd.DataFrame(df.values, columns=_flat_cols(df))
        flat.insert(0, " / ".join(n or "" for n in df.index.names), _flat_index(df))
        return flat.to_csv(index=False)
    with pd.option_context("display.width", 250, "display.max_rows", 1000, "display.max_columns", 200, "display.max_colwidth", 60):
        return df.to_string() + "\n"


def cell_records(t: Table, compare: Optional[str] = None) -> list[dict[str, Any]]:
    """JSON output: one record per cell with its levels, mean, std, n and label (with ``compare``:
    also delta, spread and p vs the reference model's cell)."""
    out = []
    refs: dict[tuple[tuple[str, ...], tuple[str, ...]], Cell] = {}
    if compare:
        compare_cells(t, compare)  # an unknown reference: ConfigError
        mi = t.rows.index("model")
        refs = {(r[:mi] + r[mi + 1:], c): cell for (r, c), cell in t.cells.items() if r[mi] == compare}
    for (r, c), cell in sorted(t.cells.items()):
        rec = {**dict(zip(t.rows, r)), **dict(zip(t.cols, c)), "mean": cell.mean, "std": cell.std if cell.n > 1 else None,
               "n": cell.n, "per_trial": {str(k): v for k, v in cell.values.items()}, "result_dir": cell.result_dir}
        rec["direction"] = _dir.describe(cell.metric)
        if compare and r[mi] != compare and (r[:mi] + r[mi + 1:], c) in refs:
            ref = refs[(r[:mi] + r[mi + 1:], c)]
            rec["delta"], rec["spread"], rec["p"] = delta_stats(cell, ref)
            rec["better_than_ref"] = _dir.better(cell.metric, cell.mean, ref.mean)
        out.append(rec)
    for (r, c), label in sorted(t.labels.items()):
        out.append({**dict(zip(t.rows, r)), **dict(zip(t.cols, c)), "status": label})
    for (r, c), v in sorted(t.averages.items()):
        out.append({**dict(zip(t.rows, r)), **dict(zip(t.cols, c)), "mean": v, "average": True})
    return out

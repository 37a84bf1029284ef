"""One self-contained static HTML report: tables and plots inline, no server, no network.

    fewshot-eval report results/ --html report.html     # then open report.html in a browser

The page (a Jinja2 template) holds the table of preferred metrics (model rows x task setting /
task / nshot columns), every result as a sortable table, the plots of ``plots.py`` as PNG data
URIs, and the list of result files that were skipped (corrupt or partial). Its few lines of
inline JavaScript sort a table when its header is clicked (or as ``#sort=<table id>:<column>[:desc]``
in the URL asks), and, once the page has loaded, record
on ``<body data-images="ok/total">`` how many images decoded (what the browser test reads back).
"""

from __future__ import annotations

import datetime as _dt
import getpass
import math
from pathlib import Path
from typing import Any

import pandas as pd

from fewshot_eval.report import plots as _plots
from fewshot_eval.report.direction import describe

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
td.key, th.key { text-align: left; }
th[data-dir="asc"]::after { content: " \\25B2"; } th[data-dir="desc"]::after { content: " \\25BC"; }
td.missing { color: #999; }
.wide { overflow-x: auto; }
.meta { color: #666; font-size: 0.85em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #eee; padding: 0.4em; }
figcaption { font-size: 0.85em; color: #555; }
img { width: 580px; max-width: 100%; height: auto; }
.skipped li { font-family: monospace; font-size: 0.85em; }
</style>
</head>
<body data-images="pending">
<h1>{{ title }}</h1>
<p class="meta">{{ n_results }} results from {{ sources }} &middot; generated {{ generated }} by {{ user }}
&middot; cells: preferred metric, mean &plusmn; std over trials (n = trials where they differ); plots shade {{ spread_label }}.</p>

<h2 id="preferred">Preferred metric</h2>
{% if pivot %}
<div class="wide"><table class="sortable" id="pivot-table">
<thead>
{% for level in pivot.header_levels %}<tr>{% if loop.last %}{% for k in pivot.index_names %}<th class="key">{{ k }}</th>{% endfor %}{% else %}<th class="key" colspan="{{ pivot.index_names|length }}">{{ pivot.level_names[loop.index0] }}</th>{% endif %}
{% for c in level %}<th title="{{ c.title }}">{{ c.text }}</th>{% endfor %}</tr>
{% endfor %}
</thead>
<tbody>
{% for row in pivot.rows %}<tr>{% for k in row.labels %}<td class="key">{{ k }}</td>{% endfor %}{% for c in row.cells %}<td{% if c.value is none %} class="missing"{% endif %} data-value="{{ c.sort }}">{{ c.text }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table></div>
{% else %}<p>No results.</p>{% endif %}

<h2 id="plots">Plots</h2>
{% if figures %}<div class="plots">
{% for f in figures %}<figure id="plot-{{ f.stem }}"><img src="{{ f.src }}" alt="{{ f.title }}" data-plot="{{ f.stem }}"><figcaption>{{ f.title }}</figcaption></figure>
{% endfor %}</div>{% else %}<p>No plots.</p>{% endif %}

<h2 id="results">All results</h2>
{% if results %}
<div class="wide"><table class="sortable" id="results-table">
<thead><tr>{% for c in result_columns %}<th{% if c.key %} class="key"{% endif %}>{{ c.name }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in results %}<tr>{% for c in r %}<td{% if c.key %} class="key"{% endif %} data-value="{{ c.sort }}">{{ c.text }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table></div>
{% else %}<p>No results.</p>{% endif %}

<h2 id="skipped">Skipped files</h2>
{% if skipped %}<ul class="skipped">{% for path, why in skipped %}<li>{{ path }}: {{ why }}</li>{% endfor %}</ul>
{% else %}<p id="no-skipped">None: every results.json found was read.</p>{% endif %}

<script>
(function () {
  function key(td) { var v = td.getAttribute("data-value"); var n = parseFloat(v); return (v !== "" && !isNaN(n)) ? n : (v || td.textContent); }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var dir = th.getAttribute("data-dir") === "asc" ? "desc" : "asc";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir);
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
          return dir === "asc" ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  window.addEventListener("load", function () {
    var m = /^#sort=([\\w-]+):(\\d+)(?::(desc))?$/.exec(location.hash);  // e.g. report.html#sort=results-table:5:desc
    var t = m && document.getElementById(m[1]);
    if (t) {
      var th = t.tHead.rows[t.tHead.rows.length - 1].cells[+m[2]];
      if (th) { th.click(); if (m[3]) { th.click(); } }
    }
    var imgs = document.images, ok = 0;
    for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
    document.body.setAttribute("data-images", ok + "/" + imgs.length);
  });
})();
</script>
</body>
</html>
"""


def _fmt(mean: float, std: float, trials: int, show_n: bool) -> str:
    s = f"{mean:.2f}" if trials <= 1 or (isinstance(std, float) and math.isnan(std)) else f"{mean:.2f} ± {std:.2f}"
    return f"{s} (n={trials})" if show_n else s


def pivot_rows(d: pd.DataFrame) -> dict[str, Any] | None:
    """The preferred-metric table as template data: rows = model (and its variant where settings
    differ), columns = task setting / task (metric) / nshot, cells = mean ± std."""
    if d.empty:
        return None
    index = ["model", "variant"] if (d["variant"] != "").any() else ["model"]
    cols = ["task_setting", "result", "metric", "nshot"]
    show_n = d["trials"].nunique() > 1
    d = d.assign(text=[_fmt(m, s, t, show_n) for m, s, t in zip(d["mean"], d["std"], d["trials"])])
    means = d.pivot_table(index=index, columns=cols, values="mean", aggfunc="first")
    texts = d.pivot_table(index=index, columns=cols, values="text", aggfunc="first")
    columns = list(means.columns)
    levels = [
        [{"text": ts, "title": ts} for ts, _, _, _ in columns],
        [{"text": f"{res} ({m})", "title": f"{res}, preferred metric {m}, {describe(m)}"} for ts, res, m, _ in columns],
        [{"text": f"{n}-shot", "title": f"{ts} / {res} / {m} / {n}-shot"} for ts, res, m, n in columns],
    ]
    rows = []
    for key in means.index:
        keys = list(key) if isinstance(key, tuple) else [key]
        cells = []
        for c in columns:
            v = means.loc[key, c]
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            cells.append({"value": None if missing else float(v), "sort": "" if missing else f"{v:.6g}", "text": "–" if missing else texts.loc[key, c]})
        rows.append({"labels": keys, "cells": cells})
    return {"index_names": index, "level_names": ["task setting", "task (metric)", "nshot"], "header_levels": levels, "rows": rows}


RESULT_COLUMNS = [("model", True), ("variant", True), ("task_setting", True), ("result", True), ("nshot", False), ("metric", True), ("mean", False),
                  ("std", False), ("ci95_low", False), ("ci95_high", False), ("trials", False),
                  ("scoring", True), ("calibrator", True), ("signature", True), ("result_dir", True)]


def result_columns(d: pd.DataFrame) -> list[tuple[str, bool]]:
    return [(n, k) for n, k in RESULT_COLUMNS if n in d.columns and (n != "variant" or (d["variant"] != "").any())
            and (n != "signature" or d["signature"].map(lambda v: isinstance(v, str) and v != "").any())]  # sacrebleu's, where shown


def result_rows(d: pd.DataFrame) -> list[list[dict[str, Any]]]:
    out = []
    columns = result_columns(d)
    for r in d.to_dict("records"):
        row = []
        for name, key in columns:
            v = r[name]
            if isinstance(v, float):
                row.append({"key": key, "sort": "" if math.isnan(v) else f"{v:.6g}", "text": "" if math.isnan(v) else f"{v:.2f}"})
            else:
                row.append({"key": key, "sort": "" if v is None else str(v), "text": "" if v is None else str(v)})
        out.append(row)
    return out


def render_html(df: pd.DataFrame, skipped: list[tuple[str, str]], sources: list[str], spread: str = "std",
                figures: list[_plots.Plot] | None = None, title: str = "fewshot-eval report") -> str:
    """The page as a string. ``figures`` defaults to every plot of ``df``."""
    import jinja2

    d = _plots.preferred(df)
    own = figures is None
    figures = _plots.figures(df, spread=spread) if own else figures
    try:
        figs = [{"stem": p.stem, "title": p.title, "src": p.data_uri("png")} for p in figures]
    finally:
        if own:
            _plots.close(figures)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(
        title=title,
        n_results=0 if df.empty else df["result_dir"].nunique(),
        sources=" ".join(sources),
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        user=getpass.getuser(),
        spread_label="the 95% CI" if spread == "ci" else "mean ± std",
        pivot=pivot_rows(d),
        figures=figs,
        result_columns=[{"name": n, "key": k} for n, k in (result_columns(d) if not d.empty else [])],
        results=result_rows(d) if not d.empty else [],
        skipped=skipped,
    )


def report_extras(files: list[Path], args: Any) -> int:
    """``fewshot-eval report ... --html OUT / --plots DIR / --mlflow URI``."""
    from fewshot_eval.store.atomic import write_text

    df, skipped = _plots.load(files)
    for path, why in skipped:
        print(f"skipped {path}: {why}")
    spread = getattr(args, "spread", None) or "std"
    figures = _plots.figures(df, spread=spread, bar_nshot=getattr(args, "bar_nshot", None)) if (args.html or args.plots) else []
    try:
        if args.plots:
            written = _plots.write_plots(figures, Path(args.plots))
            print(f"Wrote {len(written)} plot files to {args.plots}")
        if args.html:
            out = Path(args.html)
            write_text(out, render_html(df, skipped, list(args.paths), spread=spread, figures=figures))
            print(f"Wrote {out} ({len(figures)} plots, {0 if df.empty else df['result_dir'].nunique()} results); open file://{out.resolve()}")
    finally:
        _plots.close(figures)
    if getattr(args, "mlflow", None):
        from fewshot_eval.report.tracker import export_mlflow

        runs, before = export_mlflow(files, args.mlflow, skip={p for p, _ in skipped})
        print(f"Logged {len(runs)} MLflow runs to {args.mlflow}" + (f" ({before} results were logged before)" if before else ""))
    return 1 if df.empty else 0

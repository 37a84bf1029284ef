"""Subcommands that are not Hydra jobs: ``report``, ``list``, ``recalc``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from fewshot_eval.config import conf_dir

GROUPS = {"experiments": "experiment", "models": "model", "tasks": "task", "model-groups": "models", "task-groups": "tasks", "task-defs": "task_def"}


def _report(args: argparse.Namespace) -> int:
    from fewshot_eval.report.collect import find_results, long_table, pivot, write_table

    files = find_results(args.paths)
    if not files:
        print(f"No results.json found under {' '.join(args.paths)}.", file=sys.stderr)
        return 1
    if args.html or args.plots or args.mlflow:  # plots, HTML report, MLflow: report/html.py
        from fewshot_eval.report.html import report_extras

        return report_extras(files, args)
    df = long_table(files)
    print(f"{len(files)} results from {' '.join(args.paths)}\n")
    with __import__("pandas").option_context("display.width", 200, "display.max_rows", 500, "display.max_columns", 50):
        print(pivot(df, with_std=not args.no_std).to_string())
    if args.out:
        write_table(df, Path(args.out))
        print(f"\nWrote {len(df)} rows to {args.out}")
    return 0


def _first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        s = line.strip()
        if s.startswith("#") and "@package" not in s and not s.lstrip("# ").startswith(("Run:", "Sweep preset")):
            return s.lstrip("# ").strip()
    return ""


def _sources(config_dirs: list[str], group: str) -> list[tuple[str, Path, str, list[str]]]:
    """(name, file, source, shadowed sources) per option of ``group``, in search order: the user's
    dirs first (the first one given first), then the packaged one -- the first file of a name wins."""
    from fewshot_eval.searchpath import checked_dirs

    packaged = conf_dir()
    dirs = [(Path(d), d) for d in checked_dirs(config_dirs, packaged=packaged)] + [(packaged, "packaged")]
    found: dict[str, list[tuple[Path, str]]] = {}
    for d, label in dirs:
        for f in sorted((d / group).glob("*.yaml")):
            if not f.stem.startswith("_"):
                found.setdefault(f.stem, []).append((f, label))
    return [(name, hits[0][0], hits[0][1], [label for _, label in hits[1:]]) for name, hits in sorted(found.items())]


def _load_yaml(f: Path) -> dict:
    try:
        with f.open() as fh:  # the stream's name puts the file into YAML's error marks
            data = yaml.safe_load(fh)
        return data if isinstance(data, dict) else {}
    except yaml.YAMLError as e:
        from fewshot_eval.app import user_error_message

        return {"_error": user_error_message(e) or str(e)}


def _list(args: argparse.Namespace) -> int:
    from fewshot_eval.config import ConfigError

    group = GROUPS[args.what]
    try:
        rows = _sources(args.config_dir, group)
    except ConfigError as e:
        print(f"fewshot-eval: error: {e}", file=sys.stderr)
        return 2
    source = {name: f"{label} (shadows {', '.join(shadowed)})" if shadowed else label for name, _, label, shadowed in rows}
    width = max((len(s) for s in source.values()), default=0)
    for name, f, _, _ in rows:
        if group == "experiment":
            data = _load_yaml(f)
            info = data.get("experiment_info") or {}
            print(f"{name}\n    {data.get('_error') or info.get('description', _first_comment(f))}\n"
                  f"    $ {info.get('command', f'python -m fewshot_eval -m experiment={name}')}\n    source: {source[name]}")
        elif group in ("models", "tasks"):
            data = _load_yaml(f)
            params = ((data.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
            what = data.get("_error") or ", ".join(f"{k}={v}" for k, v in params.items())
            print(f"{name:28s} {source[name]:{width}s}  {what}   # {_first_comment(f)}".rstrip(" #"))
        else:
            print(f"{name:28s} {source[name]:{width}s}  {_first_comment(f)}".rstrip())
    return 0


def _recalc(args: argparse.Namespace) -> int:
    from fewshot_eval.report.recalc import recalc_command

    return recalc_command(args)


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="fewshot-eval", description="Subcommands besides the Hydra app (python -m fewshot_eval --help).")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report", help="collect results.json files into tables")
    r.add_argument("paths", nargs="+", help="output dirs, result dirs or glob patterns")
    r.add_argument("--out", help="write the long table (every metric) to this .tsv/.csv/.jsonl")
    r.add_argument("--no-std", action="store_true", help="show means only")
    r.add_argument("--html", metavar="OUT", help="write one self-contained HTML report (tables + plots) to OUT.html")
    r.add_argument("--plots", metavar="DIR", help="write the plots (PNG + SVG) into DIR")
    r.add_argument("--bar-nshot", type=int, help="the nshot of the bar charts (default: each task setting's largest)")
    r.add_argument("--spread", choices=["std", "ci"], default="std", help="plots shade mean ± std (default) or the 95%% CI")
    r.add_argument("--mlflow", metavar="URI", help="also log every result to MLflow at URI (e.g. file:///abs/mlruns); needs mlflow")
    r.set_defaults(func=_report)
    l_ = sub.add_parser("list", help="list experiments, models, tasks, groups")
    l_.add_argument("what", nargs="?", default="experiments", choices=sorted(GROUPS))
    l_.add_argument("--config-dir", action="append", default=[], help="your own config dir (as for --config-dir)")
    l_.set_defaults(func=_list)
    c = sub.add_parser("recalc", help="recompute metrics from stored predictions for another scoring/calibration")
    c.add_argument("result_dirs", nargs="+", help="result dirs (or output dirs: every result below)")
    c.add_argument("--scoring", help="sum | mean | suffix | unconditional-norm")
    c.add_argument("--calibrator", help="none | average_option")
    c.add_argument("--config-dir", action="append", default=[], help="your own config dir (for its task definitions)")
    c.set_defaults(func=_recalc)
    args = p.parse_args(argv)
    from fewshot_eval.config import ConfigError

    try:
        return int(args.func(args))
    except ConfigError as e:  # a user mistake: one line, no traceback
        print(f"fewshot-eval: error: {e}", file=sys.stderr)
        return 2

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


def _list(args: argparse.Namespace) -> int:
    dirs = [Path(d) for d in args.config_dir] + [conf_dir()]
    group = GROUPS[args.what]
    seen: set[str] = set()
    for d in dirs:
        for f in sorted((d / group).glob("*.yaml")):
            if f.stem in seen or f.stem.startswith("_"):
                continue
            seen.add(f.stem)
            if group == "experiment":
                info = (yaml.safe_load(f.read_text()) or {}).get("experiment_info", {})
                print(f"{f.stem}\n    {info.get('description', _first_comment(f))}\n    $ {info.get('command', f'python -m fewshot_eval -m experiment={f.stem}')}")
            elif group in ("models", "tasks"):
                params = ((yaml.safe_load(f.read_text()) or {}).get("hydra", {}).get("sweeper", {}).get("params", {}))
                print(f"{f.stem:28s} {', '.join(f'{k}={v}' for k, v in params.items())}   # {_first_comment(f)}")
            else:
                print(f"{f.stem:28s} {_first_comment(f)}")
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

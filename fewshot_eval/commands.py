"""Subcommands that are not Hydra jobs: ``report``, ``status``, ``prefetch``, ``list``, ``recalc``, ``verify``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from fewshot_eval.config import conf_dir

GROUPS = {"experiments": "experiment", "models": "model", "tasks": "task", "model-groups": "models", "task-groups": "tasks", "task-defs": "task_def",
          "sites": "site"}


def _selection(sweep: str | None, experiment: str | None, overrides: list[str], config_dirs: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, config dirs) of a sweep given as on its command line: ``-m`` is accepted and
    ignored, ``--config-dir DIR`` may sit inside the ``--sweep`` string."""
    import shlex

    from fewshot_eval.config import ConfigError

    words = shlex.split(sweep) if sweep else []
    words += list(overrides)
    if experiment:
        words.append(f"experiment={experiment}")
    ovr: list[str] = []
    dirs = list(config_dirs)
    it = iter(words)
    for w in it:
        if w in ("-m", "--multirun"):
            continue
        if w in ("--config-dir", "-cd"):
            d = next(it, None)
            if d is None:
                raise ConfigError(f"{w} needs a directory")
            dirs.append(d)
        elif w.startswith("--config-dir="):
            dirs.append(w.split("=", 1)[1])
        elif w.startswith("-"):
            raise ConfigError(f"{w}: not a sweep argument (give overrides such as model=a,b task=c nshot=0,2, and --config-dir DIR)")
        else:
            ovr.append(w)
    return ovr, dirs


def _plan(overrides: list[str], dirs: list[str]):  # noqa: ANN202
    import time

    from fewshot_eval.api import plan

    t0 = time.perf_counter()
    overrides = [o for o in overrides if not o.startswith("dry_run=")] + ["dry_run=true"]  # looks only, as a dry run
    try:
        planner, jobs = plan(overrides, dirs)
    except Exception as e:  # Hydra's own errors (unknown option, bad override): one line
        from fewshot_eval.config import ConfigError
        from fewshot_eval.hydra_errors import user_error_message

        if isinstance(e, ConfigError):
            raise
        from hydra.errors import HydraException

        msg = user_error_message(e)
        if msg is None and isinstance(e, HydraException):
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if msg is None:
            raise
        raise ConfigError(msg) from None
    return planner, jobs, time.perf_counter() - t0


def _report(args: argparse.Namespace) -> int:
    import json

    from fewshot_eval.config import ConfigError
    from fewshot_eval.report import tables
    from fewshot_eval.report.collect import check_table_path, find_results, load_results, long_table, trial_table, write_table

    for option, value in (("--out", args.out), ("--long", args.long)):
        if value:
            check_table_path(Path(value), option)
    jobs = None
    if args.sweep or args.experiment:
        from fewshot_eval.report.sweep_status import complete_results, label

        overrides, dirs = _selection(args.sweep, args.experiment, [], args.config_dir)
        _, jobs, _ = _plan(overrides, dirs)
        files = complete_results(jobs) + (find_results(args.paths) if args.paths else [])
        where = f"the sweep {' '.join(overrides)}"
    elif args.paths:
        files = find_results(args.paths)
        where = " ".join(args.paths)
    else:
        raise ConfigError("report: give result dirs / glob patterns, or the sweep's selection with --sweep '<its -m arguments>' or --experiment NAME")
    if args.html or args.plots or args.mlflow:  # plots, HTML report, MLflow: report/html.py
        from fewshot_eval.report.html import report_extras

        return report_extras(files, args)
    loaded = load_results(files)
    if not loaded and not jobs:
        print(f"No results.json found under {where}." if not files else f"No readable results.json under {where}.", file=sys.stderr)
        return 1
    trials = trial_table(loaded)
    rows = args.rows.split(",") if args.rows else list(tables.ROWS)
    cols = args.cols.split(",") if args.cols else list(tables.COLS)
    t = tables.build(trials, rows, cols, strict=args.strict)
    if jobs is not None:  # a complete result whose results.json could not be read: 'unreadable'
        read = {f.resolve() for f, _ in loaded}
        tables.add_labels(t, jobs, lambda j: label(j) or (None if (j.unit.result_dir / "results.json").resolve() in read else "unreadable"))
    if args.average:
        tables.add_averages(t)
    if args.compare and "model" not in t.rows:
        raise ConfigError("--compare needs 'model' among --rows")
    df = tables.frame(t, with_std=not args.no_std, compare=args.compare)
    fmt = args.format
    if fmt == "json":
        sys.stdout.write(json.dumps(tables.cell_records(t, compare=args.compare), indent=1, default=str) + "\n")
    else:
        if fmt == "terminal":
            print(f"{len(loaded)} results from {where}" + (f" ({len(jobs)} jobs planned)" if jobs is not None else "") + "\n")
        sys.stdout.write(tables.render(df, fmt))
        if fmt == "terminal":
            for note in t.notes:
                print(f"\nnote: {note}")
            if args.compare:
                print(f"\ncells: delta vs {args.compare} ± spread of the differences; p: paired t-test over trials or McNemar over examples; * p < 0.05")
    if args.out:
        write_table(long_table(files, loaded), Path(args.out))
        print(f"\nWrote {len(loaded)} results to {args.out}", file=sys.stderr if fmt != "terminal" else sys.stdout)
    if args.long:
        write_table(trials, Path(args.long))
        print(f"\nWrote {len(trials)} rows to {args.long}", file=sys.stderr if fmt != "terminal" else sys.stdout)
    return 0


def _status(args: argparse.Namespace) -> int:
    """``fewshot-eval status``: counts per model x task setting; exit 1 when a job failed, 2 when one is an error row."""
    from fewshot_eval.plan.planner import gc_paused

    overrides, dirs = _selection(None, args.experiment, args.overrides, args.config_dir)
    with gc_paused(keep=True):  # the command ends once it has counted: no collector passes over the plan's objects
        return _status_of(args, overrides, dirs)


def _status_of(args: argparse.Namespace, overrides: list[str], dirs: list[str]) -> int:
    from fewshot_eval.report.sweep_status import exit_status, status_text

    planner, jobs, elapsed = _plan(overrides, dirs)
    if planner.site is not None:
        print(f"fewshot-eval: {planner.site.describe()}")
    root = planner.run.get("output_dir")
    sys.stdout.write(status_text(jobs, elapsed, (planner.cwd / str(root)) if root else None))
    if args.missing:
        from fewshot_eval.report.sweep_status import write_missing
        from fewshot_eval.searchpath import checked_dirs

        hydra_ovr = [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
        print(write_missing(Path(args.missing), jobs, checked_dirs(dirs, packaged=conf_dir()), hydra_ovr))
    return exit_status(jobs)


def _prefetch(args: argparse.Namespace) -> int:
    """``fewshot-eval prefetch -m <the sweep's overrides> [dry_run=true]``: fetch what its jobs read from the hub."""
    from fewshot_eval.config import ConfigError
    from fewshot_eval.plan.planner import ERROR, RUN
    from fewshot_eval.plan.prefetch import prefetch

    overrides, dirs = _selection(None, args.experiment, args.overrides, args.config_dir)
    dry = [o.split("=", 1)[1].strip().lower() for o in overrides if o.startswith("dry_run=")]
    if dry and dry[-1] not in ("true", "false"):
        raise ConfigError(f"dry_run must be true or false, got '{dry[-1]}'. dry_run=true lists what prefetch would fetch.")
    planner, jobs, _ = _plan(overrides, dirs)
    from fewshot_eval.launch.slurm.site_profiles import site_env

    with site_env(planner.site):  # into the cache the site's jobs read (its env: HF_HOME ...)
        return prefetch([j for j in jobs if j.status in (RUN, ERROR)], planner.search, dry_run=bool(dry) and dry[-1] == "true")


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
        from fewshot_eval.hydra_errors import user_error_message

        return {"_error": user_error_message(e) or str(e)}


LIST_ALL = ("models", "model-groups", "tasks", "task-groups", "task-defs", "experiments", "sites")
TITLES = {"models": "Model settings (model=<name>)", "model-groups": "Model groups (models=<name>, with -m)",
          "tasks": "Task settings (task=<name>)", "task-groups": "Task groups (tasks=<name>, with -m)",
          "task-defs": "Task definitions (named in a task setting's tasks:)", "experiments": "Experiments (experiment=<name>, with -m)",
          "sites": "Site profiles (site=<name>; detected by SLURM ClusterName with the SLURM launcher)"}


def _list(args: argparse.Namespace) -> int:
    """``fewshot-eval list [WHAT]``: one section, or (no WHAT) every section with a title;
    ``list catalog PATTERN`` searches lm-evaluation-harness's task catalog."""
    if args.what == "catalog":
        return _list_catalog(args)
    if args.what is not None:
        return _list_group(args, args.what)
    for i, what in enumerate(LIST_ALL):
        print(f"{chr(10) if i else ''}== {TITLES[what]} ==")
        status = _list_group(args, what)
        if status:
            return status
    return 0


def _expanded(value: str, options: list[str]) -> str:
    """A preset's sweep string with ``glob(...)`` spelled out: ``glob(*)`` -> ``a,b,c``."""
    import fnmatch
    import re

    m = re.fullmatch(r"glob\((.*)\)", value.strip())
    if not m:
        return value
    pats = [p.strip() for p in m.group(1).strip("[]").split(",")]
    keep = [o for o in options if any(fnmatch.fnmatch(o, p) for p in pats if not p.startswith("exclude="))]
    return f"{value} = {','.join(keep)}"


def _model_summary(data: dict) -> str:
    ck = data.get("checkpoints") or {}
    if ck.get("revisions"):
        return f"[checkpoint sweep: {len(ck['revisions'])} revisions -> <name>__step<N>] "
    if ck.get("dir"):
        return f"[checkpoint sweep: {ck['dir']}/{ck.get('pattern') or 'checkpoint-*'} -> <name>__step<N>] "
    return ""


def _list_group(args: argparse.Namespace, what: str) -> int:
    from fewshot_eval.config import ConfigError

    group = GROUPS[what]
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
                  f"    $ {info.get('command', f'fewshot-eval -m experiment={name}')}\n    source: {source[name]}")
        elif group in ("models", "tasks"):
            data = _load_yaml(f)
            params = ((data.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
            options = [n for n, *_ in _sources(args.config_dir, group[:-1])]
            sweep = data.get("_error") or ", ".join(f"{k}={_expanded(str(v), options) if k == group[:-1] else v}" for k, v in params.items())
            print(f"{name:28s} {source[name]:{width}s}  {sweep}   # {_first_comment(f)}".rstrip(" #"))
        elif group == "model":
            data = _load_yaml(f)
            print(f"{name:28s} {source[name]:{width}s}  {_model_summary(data)}{data.get('_error') or _first_comment(f)}".rstrip())
        elif group == "site":
            data = _load_yaml(f)
            clusters = f"[clusters: {', '.join(map(str, data['clusters']))}] " if data.get("clusters") else ""
            print(f"{name:28s} {source[name]:{width}s}  {clusters}{data.get('_error') or data.get('description') or _first_comment(f)}".rstrip())
        elif group == "task_def":
            data = _load_yaml(f)
            print(f"{name:28s} {source[name]:{width}s}  {data.get('_error') or data.get('description') or _first_comment(f)}".rstrip())
        else:
            print(f"{name:28s} {source[name]:{width}s}  {_first_comment(f)}".rstrip())
    return 0


def _list_catalog(args: argparse.Namespace) -> int:
    """``fewshot-eval list catalog [PATTERN]``: lm-eval's task catalog (tasks, groups, tags; your
    ``<config dir>/lm_eval_tasks/`` included) -- names to use as ``lm_eval:<name>`` in a task setting."""
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_search import search_catalog
    from fewshot_eval.searchpath import checked_dirs

    dirs = [Path(d) for d in checked_dirs(args.config_dir, packaged=conf_dir())] + [conf_dir()]
    print("fewshot-eval: loading lm-eval's task catalog (~8 s the first time, then its on-disk index) ...", file=sys.stderr, flush=True)
    rows = search_catalog(args.pattern, dirs)
    for name, kind, where in rows:
        print(f"{name:40s} {kind:6s} {where}")
    print(f"{len(rows)} catalog names match {args.pattern or '*'!r}; use them as lm_eval:<name> in a task setting's tasks.", file=sys.stderr)
    return 0 if rows else 1


def _recalc(args: argparse.Namespace) -> int:
    from fewshot_eval.report.recalc import recalc_command

    return recalc_command(args)


def _verify(args: argparse.Namespace) -> int:
    """``fewshot-eval verify DIR ...``: every result below DIR checked by content; exit 1 when one is broken."""
    from fewshot_eval.config import ConfigError
    from fewshot_eval.store.integrity import verify_tree

    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        raise ConfigError(f"verify: {missing[0]} is not a directory. Pass an output dir or a result dir.")
    checked, broken = verify_tree([Path(d) for d in args.dirs])
    if broken:
        print(f"fewshot-eval: {broken} of {checked} results are broken; the next sweep over them recomputes what is wrong "
              f"(finished files are moved aside, never deleted).", file=sys.stderr)
        return 1
    print(f"fewshot-eval: {checked} results checked, every file as recorded.")
    return 0


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="fewshot-eval", description="Subcommands besides the Hydra app (fewshot-eval --help).")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report", help="collect results.json files into tables")
    r.add_argument("paths", nargs="*", help="output dirs, result dirs or glob patterns")
    r.add_argument("--sweep", help="the sweep's selection, as its -m arguments ('models=demo tasks=demo nshot=0,2'): "
                   "every planned cell is shown, missing/pending/failed ones labelled")
    r.add_argument("--experiment", help="the selection of an experiment (as -m experiment=NAME)")
    r.add_argument("--config-dir", action="append", default=[], help="your own config dir (as for --config-dir)")
    r.add_argument("--rows", help="comma-separated columns of the long table for the rows (default: model)")
    r.add_argument("--cols", help="... for the columns (default: task_setting,task,template,language,nshot,metric)")
    r.add_argument("--format", default="terminal", choices=["terminal", "markdown", "latex", "csv", "json"])
    r.add_argument("--average", action="store_true", help="add averages over the tasks/languages of each task setting, and over all")
    r.add_argument("--compare", metavar="REF_MODEL", help="show every other model's delta vs this one, with a paired test")
    r.add_argument("--strict", action="store_true", help="refuse (listing them) when settings that change numbers differ inside a cell, "
                   "instead of splitting it")
    r.add_argument("--out", help="write the summary table (every metric, one row per result x sub-result x metric) to .tsv/.csv/.jsonl/.json")
    r.add_argument("--long", help="write the long table (one row per result x sub-result x trial x metric) to .csv/.jsonl/.json/.parquet/.tsv")
    r.add_argument("--no-std", action="store_true", help="show means only")
    r.add_argument("--html", metavar="OUT", help="write one self-contained HTML report (tables + plots) to OUT.html")
    r.add_argument("--plots", metavar="DIR", help="write the plots (PNG + SVG) into DIR")
    r.add_argument("--bar-nshot", type=int, help="the nshot of the bar charts (default: each task setting's largest)")
    r.add_argument("--spread", choices=["std", "ci"], default="std", help="plots shade mean ± std (default) or the 95%% CI")
    r.add_argument("--mlflow", metavar="URI", help="also log every result to MLflow at URI (e.g. file:///abs/mlruns); needs mlflow")
    r.set_defaults(func=_report)
    st = sub.add_parser("status", help="where a sweep stands: counts per model and task setting; exit 1 if a job failed, 2 if one is an error row")
    st.add_argument("overrides", nargs="*", help="the sweep's overrides (model=a,b task=c nshot=0,2 ...)")
    st.add_argument("-m", "--multirun", action="store_true", help="accepted and ignored (as on the sweep's command line)")
    st.add_argument("--experiment", help="an experiment's selection (as experiment=NAME)")
    st.add_argument("--config-dir", action="append", default=[], help="your own config dir (as for --config-dir)")
    st.add_argument("--missing", metavar="FILE.csv", help="also write the jobs without a complete result to FILE.csv; "
                    "fewshot-eval -m job_list=FILE.csv runs exactly those")
    st.set_defaults(func=_status)
    pf = sub.add_parser("prefetch", help="fetch what a sweep's jobs read from the HuggingFace hub (models, dataset splits) into the cache; "
                        "dry_run=true lists it")
    pf.add_argument("overrides", nargs="*", help="the sweep's overrides (model=a,b task=c nshot=0,2 ...), dry_run=true to only list")
    pf.add_argument("-m", "--multirun", action="store_true", help="accepted and ignored (as on the sweep's command line)")
    pf.add_argument("--experiment", help="an experiment's selection (as experiment=NAME)")
    pf.add_argument("--config-dir", action="append", default=[], help="your own config dir (as for --config-dir)")
    pf.set_defaults(func=_prefetch)
    l_ = sub.add_parser("list", help="list models, task settings, task definitions, groups and experiments (all of them without WHAT); "
                        "'list catalog PATTERN' searches lm-eval's catalog")
    l_.add_argument("what", nargs="?", default=None, choices=sorted([*GROUPS, "catalog"]), help="one section only (default: every section)")
    l_.add_argument("pattern", nargs="?", help="list catalog: a name pattern (glob; a plain word matches inside names)")
    l_.add_argument("--config-dir", action="append", default=[], help="your own config dir (as for --config-dir)")
    l_.set_defaults(func=_list)
    c = sub.add_parser("recalc", help="recompute metrics from stored predictions for another scoring/calibration")
    c.add_argument("result_dirs", nargs="+", help="result dirs (or output dirs: every result below)")
    c.add_argument("--scoring", help="sum | mean | suffix | unconditional-norm | char-norm")
    c.add_argument("--calibrator", help="none | average_option")
    c.add_argument("--config-dir", action="append", default=[], help="your own config dir (for its task definitions)")
    c.set_defaults(func=_recalc)
    v = sub.add_parser("verify", help="check every result below DIR by content (sha256 of every file; results.json is its dir's); exit 1 if one is broken")
    v.add_argument("dirs", nargs="+", help="output dirs or result dirs")
    v.set_defaults(func=_verify)
    args = p.parse_args(argv)
    from fewshot_eval.config import ConfigError

    try:
        return int(args.func(args))
    except ConfigError as e:  # a user mistake: one line, no traceback
        print(f"fewshot-eval: error: {e}", file=sys.stderr)
        return 2

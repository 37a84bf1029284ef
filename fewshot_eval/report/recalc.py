"""Recompute finished results under another scoring mode or calibration, without loading a model.

    fewshot-eval recalc results/ --scoring mean
    fewshot-eval recalc results/demo/tiny_gpt2/pawsx_calib/2shot.1a2b3c4d --calibrator none

Each new result is written where a fresh run with that setting would write it (same identity,
same fingerprint), so a later sweep with ``scoring=mean`` finds it complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from fewshot_eval.config import NON_NUMERIC_KEYS, ConfigError, conf_dir
from fewshot_eval.plan.identity import digest
from fewshot_eval.plan.unit import _data_digest
from fewshot_eval.report.collect import find_results
from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json, write_json
from fewshot_eval.store.repro import repro_info
from fewshot_eval.store.results import aggregate, trial_files, write_trial_files
from fewshot_eval.store.status import verify_files


def recalc_result(result_dir: Path, changes: dict[str, Any], search: Sequence[Path]) -> tuple[Path, str]:
    """Write the result of ``result_dir`` recomputed with ``changes``; returns (new dir, what happened)."""
    from fewshot_eval.evaluate.recalc import recalc_metrics, rescore_rows

    res, ident = read_json(result_dir / layout.RESULTS), read_json(result_dir / layout.IDENTITY)
    if res is None or ident is None:
        raise ConfigError(f"{result_dir} is not a complete result (no results.json / identity.json).")
    broken = verify_files(result_dir, res.get("files"))
    if broken:
        raise ConfigError(f"{result_dir} is incomplete ({', '.join(broken[:3])}); re-run it instead.")
    old_identity = {k: v for k, v in ident.items() if k != "fingerprint"}
    old_digest = digest(old_identity)
    current = digest([old_digest] + [_data_digest(tuple(search), t) for t in res["tasks"]])
    if current != res["fingerprint"]:
        raise ConfigError(f"{result_dir} is stale: its task data or definitions changed since it was computed; re-run it instead.")
    params = {**res["params"], **changes}
    identity = {**old_identity, "params": {k: v for k, v in sorted(params.items()) if k not in NON_NUMERIC_KEYS}}
    new_digest = digest(identity)
    fingerprint = digest([new_digest] + [_data_digest(tuple(search), t) for t in res["tasks"]])
    root = result_dir.parents[3]
    new_dir = layout.result_dir(root, res["run_name"], res["model"], res["task_setting"], res["nshot"], new_digest)
    if new_dir == result_dir:
        return new_dir, "unchanged (same setting)"
    done = read_json(new_dir / layout.RESULTS)
    if done is not None and done.get("fingerprint") == fingerprint:
        return new_dir, "already there"
    for t in res["trials"]:
        tdir = layout.trial_dir(result_dir, t)
        old_metrics = read_json(tdir / layout.METRICS)["metrics"]
        metrics, predictions = {}, {}
        for sub in old_metrics:
            rows = [__import__("json").loads(line) for line in layout.predictions_file(result_dir, t, sub).read_text().splitlines()]
            task = sub.split(".")[0]
            predictions[sub] = rescore_rows(rows, params, task)
            kept = {k: v for k, v in old_metrics[sub].items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
            metrics[sub] = {**kept, **recalc_metrics(rows, params, task)}
        write_trial_files(new_dir, t, predictions, {"trial": t, "fingerprint": fingerprint, "metrics": metrics, "info": {"recalc_from": str(result_dir)}})
    write_json(new_dir / layout.IDENTITY, {"fingerprint": fingerprint, **identity})
    write_json(
        new_dir / layout.RESULTS,
        {
            **{k: res[k] for k in ("model", "model_name", "task_setting", "run_name", "tasks", "nshot", "trials")},
            "fingerprint": fingerprint,
            "params": params,
            "results": aggregate(new_dir, res["trials"]),
            "files": trial_files(new_dir, res["trials"]),
            "recalc_from": str(result_dir),
            "wall_time_s": None,
            "repro": repro_info(Path.cwd(), [f"recalc {k}={v}" for k, v in changes.items()]),
        },
    )
    return new_dir, "written"


def recalc_command(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.scoring:
        changes["scoring"] = args.scoring
    if args.calibrator:
        changes["calibrator"] = None if args.calibrator.lower() in ("none", "null") else args.calibrator
    if not changes:
        print("Nothing to change: pass --scoring and/or --calibrator.", file=sys.stderr)
        return 2
    search = [Path(d).resolve() for d in args.config_dir] + [conf_dir()]
    files = find_results(args.result_dirs)
    if not files:
        print(f"No results.json under {' '.join(args.result_dirs)}.", file=sys.stderr)
        return 1
    failed = 0
    for f in files:
        if "recalc_from" in (read_json(f) or {}):
            continue  # recalc from original runs only
        try:
            new_dir, what = recalc_result(f.parent, changes, search)
            print(f"{what}: {f.parent} -> {new_dir}")
        except ConfigError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
    return 1 if failed else 0

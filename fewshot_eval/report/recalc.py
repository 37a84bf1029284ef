"""Recompute finished results under another scoring mode or calibration, without loading a model.

    fewshot-eval recalc results/ --scoring mean
    fewshot-eval recalc results/demo/tiny_gpt2/pawsx_calib/2shot.1a2b3c4d --calibrator none

Each new result is written where a fresh run with that setting would write it (same identity,
same fingerprint), so a later sweep with ``scoring=mean`` finds it complete.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from fewshot_eval.config import ConfigError, closest, conf_dir
from fewshot_eval.param_schema import check_value, choices
from fewshot_eval.plan.checks import RESULT_LAYOUT, check_result_layout
from fewshot_eval.plan.identity import fingerprints, identity_digest, with_params
from fewshot_eval.report.collect import find_results
from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json, write_json
from fewshot_eval.store.repro import repro_info
from fewshot_eval.store.results import write_results, write_trial_files
from fewshot_eval.store.status import verify_files


def recalc_result(result_dir: Path, changes: dict[str, Any], search: Sequence[Path]) -> tuple[Path, str]:
    """Write the result of ``result_dir`` recomputed with ``changes``; returns (new dir, what happened)."""
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import is_catalog
    from fewshot_eval.evaluate.rescoring import recalc_metrics, rescore_rows

    res, ident = read_json(result_dir / layout.RESULTS), read_json(result_dir / layout.IDENTITY)
    if res is None or ident is None:
        raise ConfigError(f"{result_dir} is not a complete result (no results.json / identity.json).")
    check_result_layout(result_dir, res)
    broken = verify_files(result_dir, res.get("files"))
    if broken:
        raise ConfigError(f"{result_dir} is incomplete ({', '.join(broken[:3])}); re-run it instead.")
    old_identity = {k: v for k, v in ident.items() if k != "fingerprint"}
    _, accepted = fingerprints(identity_digest(old_identity), res["tasks"], search)
    if res["fingerprint"] not in accepted:
        raise ConfigError(f"{result_dir} is stale: its task data or definitions changed since it was computed; re-run it instead.")
    params = {**res["params"], **changes}
    identity = with_params(old_identity, params)
    new_digest = identity_digest(identity)
    fingerprint, new_accepted = fingerprints(new_digest, res["tasks"], search)
    root = result_dir.parents[3]
    new_dir = layout.result_dir(root, res["run_name"], res["model"], res["task_setting"], res["nshot"], new_digest)
    if new_dir == result_dir:
        return new_dir, "unchanged (same setting)"
    done = read_json(new_dir / layout.RESULTS)
    if done is not None and done.get("fingerprint") in new_accepted:
        return new_dir, "already there"
    weights = res.get("weights")
    for t in res["trials"]:
        old = read_json(layout.trial_dir(result_dir, t) / layout.METRICS)
        metrics, predictions = {}, {}
        for sub in old["metrics"]:
            rows = [json.loads(line) for line in layout.predictions_file(result_dir, t, sub).read_text().splitlines()]
            if is_catalog(sub):  # an lm-eval catalog task: its metrics are lm-eval's, whatever our scoring/calibrator
                predictions[sub], metrics[sub] = rows, dict(old["metrics"][sub])
                continue
            task = sub.split(".")[0]
            predictions[sub] = rescore_rows(rows, params, task)
            kept = {k: v for k, v in old["metrics"][sub].items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
            names = [k for k, v in old["metrics"][sub].items() if k not in kept and k != "n_examples" and not k.endswith("_raw")]
            metrics[sub] = {**kept, **recalc_metrics(rows, params, task, names)}
        info = recalc_info(old.get("info") or {}, params, res["tasks"], predictions, search)
        record = {"trial": t, "fingerprint": fingerprint, "metrics": metrics, "info": {**info, "recalc_from": str(result_dir)}}
        if weights is not None:
            record["weights"] = weights
        write_trial_files(new_dir, t, predictions, record)
    write_json(new_dir / layout.IDENTITY, {"fingerprint": fingerprint, **identity})
    header = {k: res.get(k) for k in ("model", "model_name", "task_setting", "run_name", "tasks", "nshot")}
    write_results(new_dir, {
        **header,
        "fingerprint": fingerprint,
        "weights": weights,
        "params": params,
        "recalc_from": str(result_dir),
        "wall_time_s": None,
        "repro": repro_info(Path.cwd(), [f"recalc {k}={v}" for k, v in changes.items()]),
    }, res["trials"])
    return new_dir, "written"


def recalc_info(info: dict[str, Any], params: dict[str, Any], tasks: Sequence[str], predictions: dict[str, list[dict]],
                search: Sequence[Path]) -> dict[str, Any]:
    """A trial's ``info`` under the new ``params``: its ``scoring`` and ``calibrator``, and the warnings that
    name them (a baseline, generated text, lm-eval catalog tasks ignore them) as a run with ``params``
    writes them; the other warnings kept."""
    from fewshot_eval.evaluate.calibration import check_calibrator
    from fewshot_eval.evaluate.evaluator import baseline_warning, catalog_warning, unused_settings
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import is_catalog
    from fewshot_eval.evaluate.registry import predictor_class
    from fewshot_eval.evaluate.scoring import check_mode
    from fewshot_eval.evaluate.tasks.generation_task import ignored_by_generation, is_generation_row

    predictor = str(info.get("predictor") or "")
    generated = [sub for sub, rows in predictions.items() if rows and all(is_generation_row(r) for r in rows)]
    catalog = [t for t in tasks if is_catalog(t)]
    try:
        is_lm = bool(predictor_class(predictor, search).is_lm)
    except ConfigError:  # a predictor of a plugin not here: a baseline if the run said so
        is_lm = not any("is a baseline" in w for w in info.get("warnings") or [])

    def about(mode: str, calibrator: Any) -> tuple[list[str], list[str]]:
        unused = unused_settings(mode, calibrator)
        first = [] if is_lm else baseline_warning(predictor, unused)
        rest = [w for sub in generated for w in ignored_by_generation(sub, mode, calibrator)]
        return first, rest + (catalog_warning(catalog, unused) if catalog else [])

    old_first, old_rest = about(str(info.get("scoring") or "sum"), info.get("calibrator"))
    mode, calibrator = check_mode(params.get("scoring")), check_calibrator(params.get("calibrator"))
    first, rest = about(mode, calibrator)
    kept = [w for w in info.get("warnings") or [] if w not in old_first + old_rest]
    return {**info, "scoring": mode, "calibrator": calibrator, "warnings": first + kept + rest}


def recalc_command(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.scoring:
        changes["scoring"] = args.scoring
    if args.calibrator:
        changes["calibrator"] = None if args.calibrator.lower() in ("none", "null") else args.calibrator
    if not changes:
        print("Nothing to change: pass --scoring and/or --calibrator.", file=sys.stderr)
        return 2
    for key, value in changes.items():  # checked once, before any result is read
        try:
            check_value(key, value, is_eval=True)
        except ConfigError:
            valid = ", ".join(choices(key)) + (", none" if key == "calibrator" else "")
            raise ConfigError(f"--{key} {value}: unknown {key}{closest(value, choices(key))}. Valid: {valid}.") from None
    search = [Path(d).resolve() for d in args.config_dir] + [conf_dir()]
    files = find_results(args.result_dirs)
    if not files:
        raise ConfigError(f"no results under {' '.join(args.result_dirs)}: pass result dirs ({RESULT_LAYOUT}) or an output dir above them.")
    for f in files:  # all of them before writing anything
        check_result_layout(f.parent, read_json(f))
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

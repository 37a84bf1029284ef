"""Reporting: every results.json carries each task's preferred metric, and the table shows it;
tables in every format, settings that change numbers never merged, missing/failed cells labelled,
``status`` counts equal to the plan's, corrupt results skipped, ``--compare``."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from cli_helpers import broken_model_conf, run_cli


def test_the_table_shows_each_tasks_preferred_metric(workdir: Path) -> None:
    """nli_demo prefers macro-F1 (the original dropped it and reported accuracy); recalc keeps it."""
    run_cli(["-m", "model=random", "task=nli_demo,copa_demo", "nshot=0"], workdir)
    by_task = {json.loads(f.read_text())["task_setting"]: json.loads(f.read_text()) for f in (workdir / "results").rglob("results.json")}
    assert by_task["nli_demo"]["results"]["nli_demo.default"]["preferred_metric"] == "macro_f1"
    assert by_task["copa_demo"]["results"]["copa_demo.default"]["preferred_metric"] == "accuracy"
    table = subprocess.run([sys.executable, "-m", "fewshot_eval", "report", "results"], cwd=workdir, capture_output=True, text=True)
    header = {ln.split()[0]: ln.split()[1:] for ln in table.stdout.splitlines() if ln.split()[:1] in (["task_setting"], ["metric"])}
    assert dict(zip(header["task_setting"], header["metric"])) == {"copa_demo": "accuracy", "nli_demo": "macro_f1"}, table.stdout
    rdir = next((workdir / "results").rglob("nli_demo/0shot.*"))
    run_cli(["-m", "model=tiny_gpt2", "task=nli_demo", "nshot=0", "n_eval_samples=4"], workdir)
    lm_dir = next((workdir / "results").rglob("tiny_gpt2/nli_demo/0shot.*"))
    out = subprocess.run([sys.executable, "-m", "fewshot_eval", "recalc", str(lm_dir), "--scoring", "mean"], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    [new] = [Path(ln.split(" -> ")[1]) for ln in out.stdout.splitlines() if ln.startswith("written")]
    assert json.loads((new / "results.json").read_text())["results"]["nli_demo.default"]["preferred_metric"] == "macro_f1"
    assert rdir.exists()


SWEEP = ["model=random,majority", "task=copa_demo,nli_demo", "nshot=0,2"]


def report(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cli(["report", *args], workdir, check=check)


def parse_markdown(text: str) -> tuple[list[str], list[list[str]]]:
    """A GitHub pipe table back to (header, rows); fails on anything else."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    split = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]
    assert all(ln.startswith("|") and ln.endswith("|") for ln in lines), text
    assert all(len(r) == len(split[0]) for r in split), text
    assert all(re.fullmatch(r":?-{3,}:?", c) for c in split[1]), lines[1]
    return split[0], split[2:]


def test_tables_in_every_format_never_merge_settings_that_change_numbers(workdir: Path) -> None:
    run_cli(["-m", *SWEEP], workdir)
    run_cli(["-m", "model=random", "task=copa_demo", "nshot=2", "n_eval_samples=10"], workdir)

    cells = json.loads(report(workdir, "results", "--format", "json").stdout)
    assert {(c["task_setting"], c["metric"]) for c in cells} == {("copa_demo", "accuracy"), ("nli_demo", "macro_f1")}
    copa2 = [c for c in cells if (c["model"], c["task_setting"], c["nshot"]) == ("random", "copa_demo", "2")]
    assert sorted(c["n_eval_samples"] for c in copa2) == ["0", "10"] and copa2[0]["mean"] != copa2[1]["mean"]

    term = report(workdir, "results").stdout
    assert "9 results from results" in term and "n_eval_samples" in term and "note: settings that differ" in term
    [majority] = [ln for ln in term.splitlines() if ln.startswith("majority")]
    assert majority.count("±") == 2, term  # the two 2-shot cells (3 trials); 0-shot is one trial: no ±
    assert "± 0.00" not in [ln for ln in term.splitlines() if ln.startswith("random")][0].split()[1]

    header, rows = parse_markdown(report(workdir, "results", "--format", "markdown").stdout)
    assert header[0] == "model" and len(header) == 6 and {r[0] for r in rows} == {"random", "majority"}
    assert "copa_demo default 2-shot accuracy n_eval_samples=10" in header and any("nli_demo" in h and "macro_f1" in h for h in header)
    for r in rows:
        for v in r[1:]:
            assert v == "" or re.fullmatch(r"\d+\.\d\d( ± \d+\.\d\d)?", v), r

    latex = report(workdir, "results", "--format", "latex").stdout
    body = latex[latex.index(r"\toprule"):latex.index(r"\bottomrule")]
    assert latex.startswith(r"\begin{tabular}{") and latex.rstrip().endswith(r"\end{tabular}") \
        and latex.index(r"\toprule") < latex.index(r"\midrule") < latex.index(r"\bottomrule")
    ncols = len(re.match(r"\\begin\{tabular\}\{([lrc]+)\}", latex).group(1))
    for ln in body.splitlines()[1:]:
        if ln.strip() and not ln.startswith("\\midrule"):
            assert ln.rstrip().endswith("\\\\"), ln
            widths = [int(m) for m in re.findall(r"\\multicolumn\{(\d+)\}", ln)]
            assert ln.count("&") + 1 - len(widths) + sum(widths) == ncols, ln
    assert not re.search(r"(?<!\\)_", latex) and r"$\pm$" in latex and "±" not in latex

    rows_csv = list(csv.reader(io.StringIO(report(workdir, "results", "--format", "csv").stdout)))
    assert rows_csv[0][0] == "model" and len(rows_csv) == 3 and all(len(r) == len(rows_csv[0]) for r in rows_csv)

    strict = report(workdir, "results", "--strict", check=False)
    assert strict.returncode == 2 and "n_eval_samples" in strict.stderr and "Traceback" not in strict.stderr

    pivoted = report(workdir, "results", "--rows", "model,nshot", "--cols", "task_setting,metric", "--average").stdout
    assert re.search(r"^random\s+0\s", pivoted, re.M) and "(all)" in pivoted

    report(workdir, "results", "--long", str(workdir / "long.csv"))
    long = pd.read_csv(workdir / "long.csv")
    n_trials = {0: 1, 2: 3}
    # 9 results, one sub-result each, 3 metrics (accuracy, macro_f1, n_examples) per trial
    assert len(long) == 3 * sum(n_trials[n] for n in [0, 0, 0, 0, 2, 2, 2, 2, 2])
    assert {"model", "task", "template", "language", "trial", "metric", "value", "preferred", "n_eval_samples", "scoring", "weights"} <= set(long.columns)
    assert set(long[long.preferred & (long.task == "nli_demo")].metric) == {"macro_f1"}

    cmp = report(workdir, "results", "--compare", "majority").stdout
    [random_row] = [ln for ln in cmp.splitlines() if ln.startswith("random")]
    assert re.search(r"[+-]\d+\.\d\d ± \d+\.\d\d p=", random_row) and re.search(r"[+-]\d+\.\d\d p=", random_row), cmp
    assert "delta vs majority" in cmp
    assert report(workdir, "results", "--compare", "nobody", check=False).returncode == 2
    deltas = [c for c in json.loads(report(workdir, "results", "--compare", "majority", "--format", "json").stdout) if c["model"] == "random"]
    assert all(isinstance(c["p"], float) for c in deltas if c["n_eval_samples"] == "0") and len(deltas) == 5


def test_a_corrupt_or_partial_result_is_listed_and_skipped(workdir: Path) -> None:
    run_cli(["-m", "model=random", "task=copa_demo,nli_demo", "nshot=0"], workdir)
    good = sorted((workdir / "results").rglob("results.json"))
    broken = workdir / "results" / "demo" / "other" / "copa_demo" / good[0].parent.name
    partial = workdir / "results" / "demo" / "third" / "copa_demo" / good[0].parent.name
    shutil.copytree(good[0].parent, broken)
    shutil.copytree(good[0].parent, partial)
    text = (broken / "results.json").read_text()
    (broken / "results.json").write_text(text[: len(text) // 2])
    res = json.loads((partial / "results.json").read_text())
    del res["results"]
    (partial / "results.json").write_text(json.dumps(res))
    for args in (["results"], [f"{workdir}/results/*/*"], [str(workdir / "results"), "--format", "markdown"]):
        proc = report(workdir, *args)
        assert "Traceback" not in proc.stderr
        warned = [ln for ln in proc.stderr.splitlines() if ln.startswith("fewshot-eval: warning: skipped")]
        assert len(warned) == 2 and any(str(broken.name) in w and "/other/" in w and "not valid JSON" in w for w in warned)
        assert any("/third/" in w and "results" in w for w in warned), warned
        assert "other" not in proc.stdout and "third" not in proc.stdout and "random" in proc.stdout


def test_sweep_report_labels_every_planned_cell_and_status_counts_match_the_plan(workdir: Path, tmp_path: Path) -> None:
    conf = broken_model_conf(tmp_path)
    run_cli(["-m", "model=random,majority", "task=copa_demo,nli_demo", "nshot=0"], workdir)
    assert run_cli(["-m", "--config-dir", str(conf), "model=broken", "task=copa_demo", "nshot=0"], workdir, check=False).returncode == 1
    # a job submitted to SLURM that cannot be asked about: pending
    sel = ["--config-dir", str(conf), "model=random,majority,broken", "task=copa_demo,nli_demo", "nshot=0,2"]
    dry = run_cli(["-m", *sel, "dry_run=true"], workdir).stdout
    [pend_dir] = [workdir / "results" / ln.split()[5] for ln in dry.splitlines()
                  if ln.startswith("run ") and " majority " in ln and " nli_demo " in ln and " 2 " in ln]
    pend_dir.mkdir(parents=True)
    (pend_dir / "submitted.json").write_text(json.dumps({"job_id": "4242_1", "trials": None}))
    env = {"PATH": os.path.dirname(sys.executable)}  # no squeue/sacct
    slurm_sel = sel + ["hydra/launcher=submitit_slurm"]
    dry = run_cli(["-m", *slurm_sel, "dry_run=true"], workdir, env=env).stdout
    planned = {s: int(n) for n, s in re.findall(r"(\d+) (skip: complete|skip: pending|run|stale|n/a|error|failed)\b", dry.split("Dry run:")[1])}

    proc = run_cli(["status", "-m", *slurm_sel], workdir, env=env, check=False)
    assert proc.returncode == 1, proc.stderr  # a job failed
    status = proc.stdout
    [total] = [ln.split() for ln in status.splitlines() if ln.startswith("all ")]
    head = [h.lower() for h in status.splitlines()[0].split()]
    got = dict(zip(head[2:], map(int, total[1:])))
    assert got["complete"] == planned["skip: complete"] == 4
    assert got.get("pending", 0) + got.get("running", 0) == planned["skip: pending"] == 1
    assert got["failed"] + got["missing"] == planned["run"] + planned.get("failed", 0) and got["failed"] == 1
    assert got["total"] == sum(planned.values()) == 12
    [fail] = [ln for ln in status.splitlines() if ln.strip().startswith("broken x copa_demo nshot=0:")]
    assert "Error: " in fail and "(log: " in fail and Path(fail.split("(log: ")[1].split(")")[0]).exists()
    assert "SLURM job 4242_1" in status
    per_model = {tuple(ln.split()[:2]): ln.split()[2:] for ln in status.splitlines()[1:] if ln.startswith(("random ", "broken "))}
    assert per_model[("broken", "copa_demo")][-1] == "2" and per_model[("random", "nli_demo")][0] == "1"

    out = run_cli(["report", "--sweep", " ".join(["-m", *slurm_sel])], workdir, env=env).stdout
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.split()[:1] in (["random"], ["majority"], ["broken"])}
    assert "failed" in rows["broken"] and "missing" in rows["broken"] and "missing" in rows["random"], out
    assert "pending" in rows["majority"], out
    assert re.search(r"\d+\.\d\d", rows["random"]) and "12 jobs planned" in out
    cells = json.loads(report(workdir, "--sweep", " ".join(sel), "--format", "json").stdout)
    labels = {(c["model"], c["task_setting"], c["nshot"]): c.get("status") for c in cells}
    assert labels[("broken", "copa_demo", "0")] == "failed" and labels[("random", "copa_demo", "2")] == "missing"
    assert labels[("random", "copa_demo", "0")] is None
    assert Path(cells[0]["result_dir"]).is_absolute()
    (Path(cells[0]["result_dir"]) / "results.json").write_text("{")  # corrupted: the plan runs it again
    proc = report(workdir, "--sweep", " ".join(sel), "--format", "json")
    assert "Traceback" not in proc.stderr
    assert (cells[0]["model"], cells[0]["task_setting"], "0", "missing") in {(c["model"], c["task_setting"], c["nshot"], c.get("status"))
                                                                            for c in json.loads(proc.stdout)}
    bad = report(workdir, "--sweep", "model=nobody", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nobody" in bad.stderr


def trial_rows(model: str, weights: str, values: list[float], metric: str = "accuracy", rdir: str = "", **settings: object) -> list[dict]:
    return [{"run_name": "demo", "model": model, "task_setting": "copa_demo", "nshot": 2, "result": "copa_demo.default",
             "task": "copa_demo", "template": "default", "language": None, "trial": t, "metric": metric, "value": v,
             "preferred": True, "weights": weights, "revision": None, "scoring": "sum", "seed": 0, "n_eval_samples": 0,
             "result_dir": rdir or f"/r/{model}/{weights}/{metric}", **settings} for t, v in enumerate(values)]


def test_checkpoints_raw_and_calibrated_trial_counts_and_paired_deltas() -> None:
    import pytest

    from fewshot_eval.config import ConfigError
    from fewshot_eval.report import tables

    df = pd.DataFrame(
        trial_rows("lm", "ckpt-1000", [50.0, 52.0, 54.0]) + trial_rows("lm", "ckpt-2000", [60.0, 61.0, 65.0])
        + trial_rows("lm", "ckpt-2000", [40.0, 41.0, 42.0], metric="accuracy_raw")
        + trial_rows("base", "b", [50.0, 50.5, 51.0]) + trial_rows("base", "b", [30.0, 31.0], rdir="/r/base/2trials", scoring="mean")
    )
    t = tables.build(df)
    assert t.rows == ["model", "weights"] and "scoring" in t.cols  # two checkpoints of one setting: two rows
    frame = tables.frame(t)
    assert frame.loc[("lm", "ckpt-1000")].dropna().str.contains("52.00 ± 2.00").any()
    cols = {c for c in frame.columns}
    assert any("accuracy_raw" in c for c in cols) and any("accuracy" in c for c in cols)  # raw and calibrated apart
    assert "(n=2)" in " ".join(frame.loc[("base", "b")].tolist()) and "(n=3)" not in frame.to_string()
    with pytest.raises(ConfigError, match="weights, scoring|scoring, weights"):
        tables.build(df, strict=True)

    same = tables.build(pd.DataFrame(trial_rows("a", "w", [50.0, 52.0, 54.0]) + trial_rows("b", "w", [60.0, 62.5, 64.0])))
    [[cell]] = tables.frame(same, compare="a").loc[["b"]].values.tolist()
    assert cell.startswith("+10.17 ± 0.29 p=") and cell.endswith("*")  # paired over the 3 trials, significant


def test_old_result_trees_read_with_their_preferred_metric(workdir: Path) -> None:
    """0.1.0 results carry no preferred_metric in results.json: it comes from the trials' metrics.json."""
    fixtures = Path(__file__).parent / "fixtures"
    for version in ("0.1.0", "0.2.0"):
        cells = json.loads(report(workdir, str(fixtures / f"results_{version}"), "--format", "json").stdout)
        assert {c["metric"] for c in cells if c["task_setting"] == "nli_demo"} == {"macro_f1"}, version
        calib = {c["metric"] for c in cells if c["model"] == "tiny_gpt2" and c["task_setting"] == "pawsx_calib"}
        assert calib == {"accuracy", "accuracy_raw"}, version  # calibrated and raw never share a cell


def test_sub_results_are_not_merged_when_pivoted_away() -> None:
    from fewshot_eval.report import tables

    de = [{**r, "result": "pawsx_demo.default.de", "language": "de", "value": r["value"] + 10} for r in trial_rows("lm", "w", [50.0, 52.0])]
    en = [{**r, "result": "pawsx_demo.default.en", "language": "en"} for r in trial_rows("lm", "w", [50.0, 52.0])]
    t = tables.build(pd.DataFrame(de + en), cols=["task_setting", "metric"])
    assert t.added == ["result"] and len(t.cells) == 2


def test_an_experiments_selection_plans_without_writing(workdir: Path) -> None:
    out = report(workdir, "--experiment", "demo", "--format", "markdown").stdout
    header, rows = parse_markdown(out)
    assert rows and all(set(r[1:]) == {"missing"} for r in rows), out
    status = run_cli(["status", "--experiment", "demo"], workdir).stdout
    assert re.search(rf"^all\s+{len(rows) * (len(header) - 1)}\s+{len(rows) * (len(header) - 1)}$", status, re.M), status
    assert list(workdir.iterdir()) == []  # looking writes nothing

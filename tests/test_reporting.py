"""Reporting: every results.json carries each task's preferred metric, and the table shows it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli_helpers import run_cli


def test_the_table_shows_each_tasks_preferred_metric(workdir: Path) -> None:
    """nli_demo prefers macro-F1 (the original dropped it and reported accuracy); recalc keeps it."""
    run_cli(["-m", "model=random", "task=nli_demo,copa_demo", "nshot=0"], workdir)
    by_task = {json.loads(f.read_text())["task_setting"]: json.loads(f.read_text()) for f in (workdir / "results").rglob("results.json")}
    assert by_task["nli_demo"]["results"]["nli_demo.default"]["preferred_metric"] == "macro_f1"
    assert by_task["copa_demo"]["results"]["copa_demo.default"]["preferred_metric"] == "accuracy"
    table = subprocess.run([sys.executable, "-m", "fewshot_eval", "report", "results"], cwd=workdir, capture_output=True, text=True)
    rows = {ln.split()[0]: ln for ln in table.stdout.splitlines() if ln.startswith(("nli_demo", "copa_demo"))}
    assert " macro_f1 " in rows["nli_demo"] and " accuracy " in rows["copa_demo"], table.stdout
    rdir = next((workdir / "results").rglob("nli_demo/0shot.*"))
    run_cli(["-m", "model=tiny_gpt2", "task=nli_demo", "nshot=0", "n_eval_samples=4"], workdir)
    lm_dir = next((workdir / "results").rglob("tiny_gpt2/nli_demo/0shot.*"))
    out = subprocess.run([sys.executable, "-m", "fewshot_eval", "recalc", str(lm_dir), "--scoring", "mean"], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    [new] = [Path(ln.split(" -> ")[1]) for ln in out.stdout.splitlines() if ln.startswith("written")]
    assert json.loads((new / "results.json").read_text())["results"]["nli_demo.default"]["preferred_metric"] == "macro_f1"
    assert rdir.exists()

"""Local launchers: parallel pools respect each model's max_parallel; results match the sequential run."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from conftest import run_cli


def intervals(root: Path, model: str) -> list[tuple[datetime, datetime]]:
    out = []
    for f in root.rglob(f"*/{model}/*/*/results.json"):
        r = json.loads(f.read_text())
        out.append((datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"])))
    return sorted(out)


def max_overlap(iv: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(s, 1) for s, _ in iv] + [(e, -1) for _, e in iv], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def test_parallel_pools_respect_max_parallel(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    # one job at a time for 'serial', two at a time for 'wide'; both slow enough to overlap (nshot=-1: long prompts)
    (conf / "model" / "serial.yaml").write_text("name: serial\npredictor: random\nmax_parallel: 1\n")
    (conf / "model" / "wide.yaml").write_text("name: wide\npredictor: random\nmax_parallel: 2\n")
    args = ["-m", "model=serial,wide", "task=copa_demo,nli_demo,pawsx_default", "nshot=0", "hydra/launcher=local_parallel",
            "hydra.launcher.max_workers=3", "--config-dir", str(conf)]
    out = run_cli(args, workdir).stdout
    assert "ran 6, skipped 0, failed 0" in out
    root = workdir / "results"
    assert max_overlap(intervals(root, "serial")) == 1
    assert len(intervals(root, "wide")) == 3
    # the two pools ran side by side: some serial job overlaps some wide job
    s, w = intervals(root, "serial"), intervals(root, "wide")
    assert any(a0 < b1 and b0 < a1 for a0, a1 in s for b0, b1 in w)


def test_parallel_and_sequential_give_identical_metrics(workdir: Path, tmp_path: Path) -> None:
    args = ["-m", "models=baselines", "task=copa_demo,nli_demo", "nshot=2", "num_trials=2"]
    run_cli(args + ["output_dir=seq"], workdir)
    run_cli(args + ["output_dir=par", "hydra/launcher=local_parallel"], workdir)
    seq = {f.relative_to(workdir / "seq"): json.loads(f.read_text())["results"] for f in (workdir / "seq").rglob("results.json")}
    par = {f.relative_to(workdir / "par"): json.loads(f.read_text())["results"] for f in (workdir / "par").rglob("results.json")}
    assert len(seq) == 4 and seq == par

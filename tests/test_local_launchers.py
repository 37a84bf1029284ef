"""Local launchers: parallel pools respect each model's max_parallel; results match the sequential run."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import run_cli


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def test_parallel_pools_respect_max_parallel(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "serial.yaml").write_text("name: serial\npredictor: random\nmax_parallel: 1\n")
    (conf / "model" / "wide.yaml").write_text("name: wide\npredictor: random\nmax_parallel: 2\n")
    args = ["-m", "model=serial,wide", "task=copa_demo,nli_demo,pawsx_default", "nshot=0", "hydra/launcher=local_parallel",
            "hydra.launcher.max_workers=3", "--config-dir", str(conf)]
    out = run_cli(args, workdir).stdout
    assert "ran 6, skipped 0, failed 0" in out
    [log] = (workdir / "results" / ".hydra_sweeps").glob("*/launches.jsonl")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == 6 and all(r["exit"] == 0 for r in rows)
    serial = [(r["start"], r["end"]) for r in rows if r["pool"] == "serial"]
    wide = [(r["start"], r["end"]) for r in rows if r["pool"] == "wide"]
    assert max_overlap(serial) == 1  # max_parallel 1: one at a time
    assert max_overlap(wide) == 2  # max_parallel 2 with 3 workers: two at a time
    assert max_overlap(serial + wide) == 3  # the pools run side by side
    assert len(list((workdir / "results").rglob("results.json"))) == 6


def test_parallel_and_sequential_give_identical_metrics(workdir: Path) -> None:
    args = ["-m", "models=baselines", "task=copa_demo,nli_demo", "nshot=2", "num_trials=2"]
    run_cli(args + ["output_dir=seq"], workdir)
    run_cli(args + ["output_dir=par", "hydra/launcher=local_parallel"], workdir)
    seq = {f.relative_to(workdir / "seq"): json.loads(f.read_text())["results"] for f in (workdir / "seq").rglob("results.json")}
    par = {f.relative_to(workdir / "par"): json.loads(f.read_text())["results"] for f in (workdir / "par").rglob("results.json")}
    assert len(seq) == 4 and seq == par


def test_split_trials_of_one_result_run_side_by_side(workdir: Path) -> None:
    """split_trials in the parallel launcher: the trials of one result dir run at once, the last aggregates;
    override_completed moves the old result aside once, not once per trial."""
    args = ["-m", "model=tiny_gpt2", "task=copa_demo", "nshot=2", "num_trials=3", "split_trials=true",
            "hydra/launcher=local_parallel", "hydra.launcher.max_workers=3", "model.max_parallel=3"]
    out = run_cli(args, workdir).stdout
    assert "ran 3, skipped 0, failed 0" in out
    [log] = (workdir / "results" / ".hydra_sweeps").glob("*/launches.jsonl")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert max_overlap([(r["start"], r["end"]) for r in rows]) >= 2  # three processes on one result dir at once
    [res] = (workdir / "results").rglob("results.json")
    split = json.loads(res.read_text())
    assert split["trials"] == [0, 1, 2] and sorted(p.name for p in res.parent.glob("trial*")) == ["trial0", "trial1", "trial2"]
    whole = run_cli(["-m", "model=tiny_gpt2", "task=copa_demo", "nshot=2", "num_trials=3", "output_dir=whole"], workdir)
    assert "ran 1" in whole.stdout
    [ref] = (workdir / "whole").rglob("results.json")
    assert json.loads(ref.read_text())["results"] == split["results"]
    again = run_cli(args + ["override_completed=true"], workdir).stdout
    assert "ran 3, skipped 0, failed 0" in again
    assert len(list(res.parent.parent.glob(res.parent.name + ".old-*"))) == 1
    assert json.loads(res.read_text())["results"] == split["results"]


def test_sequential_sweep_loads_a_model_once(workdir: Path) -> None:
    proc = run_cli(["-m", "model=tiny_gpt2", "task=copa_demo,nli_demo", "nshot=0,1"], workdir)
    assert "ran 4, skipped 0, failed 0" in proc.stdout
    assert (proc.stdout + proc.stderr).count("loaded model") == 1


def test_job_processes_die_with_a_sigkilled_sweep_and_a_rerun_proceeds(workdir: Path) -> None:
    """A SIGKILL of the sweep's process group used to leave its local_parallel job processes running (they
    lead their own sessions), and a re-run exited 3 'running elsewhere' until they finished."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from fewshot_eval.faults import FAULT_ENV

    args = ["-m", "model=random", "task=copa_demo", "nshot=2", "num_trials=2", "hydra/launcher=local_parallel"]
    proc = subprocess.Popen([sys.executable, "-m", "fewshot_eval", *args], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, FAULT_ENV: "stall-after-trial"})  # the job stops after trial 0
    kids: list[int] = []
    try:
        t0 = time.monotonic()
        while not list((workdir / "results").rglob("trial0/metrics.json")):
            assert proc.poll() is None and time.monotonic() - t0 < 120, "the job did not reach its first trial"
            time.sleep(0.1)
        kids = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat") if _parent(p) == proc.pid]
        assert kids
        os.killpg(proc.pid, signal.SIGKILL)  # the whole sweep, as `kill -9 -<pgid>` does
        proc.wait()
        t0 = time.monotonic()
        while [k for k in kids if _alive(k)] and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        assert [k for k in kids if _alive(k)] == [], "job processes outlived their SIGKILLed sweep"
    finally:
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)
    out = run_cli(args, workdir)
    assert "ran 1" in out.stdout and "running elsewhere" not in out.stdout, out.stdout


def _parent(stat: Path) -> int:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

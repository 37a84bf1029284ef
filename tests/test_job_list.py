"""The missing-results list: ``fewshot-eval status ... --missing FILE.csv`` writes the jobs without a
complete result, ``fewshot-eval -m job_list=FILE.csv`` runs exactly those (round trips through the real
CLI, with a user config dir, an experiment's own output dir, a failed job, split trials)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cli_helpers import broken_model_conf, run_cli
from fewshot_eval.plan.job_list import COLUMNS


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def planned_dirs(out: str, root: Path, status: str = "run") -> set[str]:
    """Result dirs of a dry run's rows with ``status``."""
    return {str(root / line.split()[5]) for line in out.splitlines() if line.startswith(status + " ")}


def complete(root: Path) -> set[str]:
    return {str(p.parent) for p in root.rglob("results.json") if ".old-" not in str(p)}


def test_status_writes_the_missing_jobs_and_a_sweep_runs_exactly_those(tmp_path: Path, workdir: Path) -> None:
    conf = broken_model_conf(tmp_path)
    (conf / "model" / "my_random.yaml").write_text("name: my_random\npredictor: random\n")
    grid = ["model=my_random,broken", "task=copa_demo,nli_demo", "nshot=0,2", "num_trials=2", "output_dir=out"]
    run_cli(["-m", "--config-dir", str(conf), "model=my_random", "task=copa_demo", "nshot=0,2", "num_trials=2", "output_dir=out"], workdir)
    run_cli(["-m", "--config-dir", str(conf), "model=broken", "task=copa_demo", "nshot=0", "num_trials=2", "output_dir=out"], workdir, check=False)
    done_before = complete(workdir / "out")
    assert len(done_before) == 2

    proc = run_cli(["status", "-m", "--config-dir", str(conf), *grid, "--missing", "missing.csv"], workdir, check=False)
    assert proc.returncode == 1, proc.stderr  # status exits 1 while a job has failed
    out = proc.stdout
    assert "Wrote 6 jobs without a complete result (1 failed, 5 missing) to missing.csv. Run them: fewshot-eval -m job_list=missing.csv" in out
    listed = rows(workdir / "missing.csv")
    assert tuple(listed[0]) == COLUMNS and len(listed) == 6
    assert {(r["model"], r["task"], r["nshot"], r["state"]) for r in listed if r["model"] == "broken"} == {
        ("broken", "copa_demo", "0", "failed"), ("broken", "copa_demo", "2", "missing"), ("broken", "nli_demo", "0", "missing"),
        ("broken", "nli_demo", "2", "missing")}
    mine = [r for r in listed if r["model"] == "my_random"]
    assert mine[0]["overrides"] == "model=my_random task=nli_demo nshot=0 num_trials=2 output_dir=out"  # no dry_run, no hf_offline
    assert {r["config_dirs"] for r in listed} == {str(conf)}
    assert not {r["result_dir"] for r in listed} & done_before

    # keep the rows of one model (a list may be edited), then run it: no --config-dir needed, the list names it
    with (workdir / "mine.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(mine)
    plan = run_cli(["-m", "job_list=mine.csv", "dry_run=true"], workdir).stdout
    assert planned_dirs(plan, workdir / "out") == {r["result_dir"] for r in mine} and "2 jobs planned" in plan
    ran = run_cli(["-m", "job_list=mine.csv"], workdir).stdout
    assert "ran 2, skipped 0, failed 0" in ran
    assert complete(workdir / "out") == done_before | {r["result_dir"] for r in mine}  # exactly those, nothing else

    # the whole list again: the two are complete now, the broken model's rows run (and fail) -- nothing else
    again = run_cli(["-m", "job_list=missing.csv", "dry_run=true"], workdir).stdout
    assert "6 jobs planned" in again and "(4 run, 2 skip: complete)" in again.replace("2 skip: complete, 4 run", "4 run, 2 skip: complete")
    assert planned_dirs(again, workdir / "out") == {r["result_dir"] for r in listed if r["model"] == "broken"}
    out = run_cli(["status", "-m", "--config-dir", str(conf), *grid, "--missing", "missing.csv"], workdir, check=False).stdout
    assert "Wrote 4 jobs" in out and {r["model"] for r in rows(workdir / "missing.csv")} == {"broken"}


def test_the_list_runs_on_the_original_sweeps_base_with_command_line_values(tmp_path: Path, workdir: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "mine.yaml").write_text(
        "# @package _global_\noutput_dir: exp_out\nnum_trials: 1\n"
        "hydra:\n  sweeper:\n    params:\n      model: random,majority\n      task: copa_demo,nli_demo\n      nshot: '0,2'\n")
    run_cli(["-m", "--config-dir", str(conf), "experiment=mine", "model=random"], workdir)  # half of it
    out = run_cli(["status", "--config-dir", str(conf), "--experiment", "mine", "--missing", "lists/left.csv"], workdir).stdout
    assert "Wrote 4 jobs" in out
    listed = rows(workdir / "lists" / "left.csv")
    assert all("experiment=mine" in r["overrides"].split() and r["model"] == "majority" for r in listed)
    # the experiment's output_dir and num_trials come back with it; a run param on the command line wins
    plan = run_cli(["-m", "job_list=lists/left.csv", "max_parallel=1", "dry_run=true"], workdir).stdout
    assert planned_dirs(plan, workdir / "exp_out") == {r["result_dir"] for r in listed}
    assert plan.count("| max 1") == 4
    run_cli(["-m", "job_list=lists/left.csv"], workdir)
    assert len(complete(workdir / "exp_out")) == 8 and not (workdir / "results").exists()
    assert "Every job is complete" in run_cli(["status", "--config-dir", str(conf), "--experiment", "mine", "--missing", "lists/left.csv"], workdir).stdout
    assert rows(workdir / "lists" / "left.csv") == []
    empty = run_cli(["-m", "job_list=lists/left.csv"], workdir).stdout
    assert "0 jobs planned" in empty and "Nothing to launch" in empty


def test_a_split_trial_list_reruns_only_the_missing_trials(workdir: Path) -> None:
    args = ["model=random", "task=copa_demo", "nshot=2", "num_trials=3", "split_trials=true"]
    run_cli(["-m", *args], workdir)
    [rdir] = (workdir / "results").glob("demo/random/copa_demo/2shot.*")
    first = (rdir / "trial0" / "metrics.json").stat().st_mtime_ns
    for p in [rdir / "results.json", *(rdir / "trial1").iterdir()]:
        p.unlink()
    out = run_cli(["status", "-m", *args, "--missing", "missing.csv"], workdir).stdout
    [row] = rows(workdir / "missing.csv")
    assert "Wrote 1 job " in out and row["trials"] == "1" and "trial=" not in row["overrides"]
    ran = run_cli(["-m", "job_list=missing.csv"], workdir).stdout
    assert "ran 1, skipped 2, failed 0" in ran
    assert (rdir / "trial0" / "metrics.json").stat().st_mtime_ns == first
    assert json.loads((rdir / "results.json").read_text())["trials"] == [0, 1, 2]


def test_bad_job_lists_and_selections_fail_with_one_line(workdir: Path) -> None:
    def fails(args: list[str], text: str) -> None:
        proc = run_cli(args, workdir, check=False)
        assert proc.returncode == 2 and text in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr

    fails(["-m", "job_list=nope.csv"], "job_list=nope.csv: cannot read")
    (workdir / "other.csv").write_text("a,b\n1,2\n")
    fails(["-m", "job_list=other.csv"], "is not a job list (no 'overrides' column")
    run_cli(["status", "model=random,majority", "task=copa_demo", "--missing", "m.csv"], workdir)
    fails(["job_list=m.csv"], "job_list=m.csv runs the jobs of a list: add -m")
    fails(["-m", "job_list=m.csv", "model=random"], "job_list=m.csv selects the jobs itself: 'model=random' cannot be added")
    fails(["-m", "job_list=m.csv", "nshot=0,2"], "'nshot=0,2' cannot be added")
    (workdir / "sub").mkdir()  # relative output_dir from another directory: other result dirs, said once
    moved = run_cli(["-m", "job_list=../m.csv", "dry_run=true"], workdir / "sub")
    assert "warning: job_list=../m.csv: 2 of its jobs plan to other result dirs than the list names" in moved.stderr
    assert "warning" not in run_cli(["-m", "job_list=m.csv", "dry_run=true"], workdir).stderr
    fails(["status", "model=random", "task=copa_demo", "--missing", "m.txt"], "--missing m.txt: the job list is a CSV file")
    bad = run_cli(["status", "job_list=nope.csv"], workdir, check=False)
    assert bad.returncode == 2 and "job_list=nope.csv: cannot read" in bad.stderr

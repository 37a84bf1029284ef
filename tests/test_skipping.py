"""Re-running a sweep launches only what is missing; killed jobs resume; finished results are never lost."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from cli_helpers import run_cli, unloadable_weights
from fewshot_eval.faults import FAULT_ENV

SWEEP = ["-m", "models=baselines", "task=copa_demo,nli_demo", "nshot=0,2"]


def results(workdir: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("results.json")}


def launched(workdir: Path) -> list[dict]:
    log = workdir / "results" / "scheduled_jobs.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_second_run_launches_nothing_and_says_why(workdir: Path) -> None:
    first = run_cli(SWEEP, workdir).stdout
    assert "ran 8, skipped 0, failed 0" in first
    done = results(workdir)
    assert len(done) == 8 and len(launched(workdir)) == 8
    second = run_cli(SWEEP, workdir).stdout
    assert "8 skip: complete" in second and "Nothing to launch" in second
    assert results(workdir) == done and len(launched(workdir)) == 8


def test_adding_an_nshot_value_launches_only_the_new_jobs(workdir: Path) -> None:
    run_cli(SWEEP, workdir)
    done = results(workdir)
    out = run_cli(SWEEP[:-1] + ["nshot=0,2,4"], workdir).stdout
    assert "8 skip: complete" in out and "4 run" in out and "ran 4, skipped 8" in out
    new = results(workdir)
    assert {p: new[p] for p in done} == done and len(new) == 12
    assert sorted(j["nshot"] for j in launched(workdir)[8:]) == [4, 4, 4, 4]


def test_sigkilled_job_is_rerun_and_nothing_else(workdir: Path) -> None:
    """Kill the sweep while the tiny-GPT-2 job is between trials; the next sweep resumes just that job.
    The kill is at a known place (fewshot_eval/faults.py): the local launcher runs the jobs in the sweep's
    process, the random job's three trials first, so the 4th trial written is tiny_gpt2's trial 0."""
    args = ["-m", "model=random,tiny_gpt2", "task=copa_demo", "nshot=2", "num_trials=3"]
    proc = run_cli(args, workdir, check=False, env={FAULT_ENV: "kill-after-trial:4"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    [trial0] = (workdir / "results").glob("demo/tiny_gpt2/copa_demo/2shot.*/trial0/metrics.json")
    rdir = trial0.parent.parent
    assert not (rdir / "results.json").exists() and not (rdir / "trial1").exists()
    finished = results(workdir)  # the random job before it
    assert len(finished) == 1
    trial0_mtime = trial0.stat().st_mtime_ns
    plan = run_cli(args + ["dry_run=true"], workdir).stdout
    assert "1 skip: complete" in plan and "1 run" in plan and "resume: trials [0" in plan
    out = run_cli(args, workdir).stdout
    assert "ran 1, skipped 1, failed 0" in out
    assert trial0.stat().st_mtime_ns == trial0_mtime, "a finished trial was recomputed"
    assert {p: results(workdir)[p] for p in finished} == finished
    res = json.loads((rdir / "results.json").read_text())
    assert res["trials"] == [0, 1, 2] and len(res["results"]) >= 1


def test_job_processes_killed_between_trials_are_resumed(workdir: Path, tmp_path: Path) -> None:
    """local_parallel: each job process is SIGKILLed right after its first trial (fewshot_eval/faults.py);
    the sweep reports both jobs failed and keeps going; the next sweep runs only trials 1 and 2 and ends
    with the numbers of an uninterrupted sweep."""
    args = ["-m", "model=random,majority", "task=copa_demo", "nshot=2", "num_trials=3", "hydra/launcher=local_parallel"]
    proc = run_cli(args, workdir, check=False, env={FAULT_ENV: "kill-after-trial:1"})
    assert proc.returncode == 1 and "ran 0, skipped 0, failed 2" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "exit -9" in proc.stdout + proc.stderr
    trial0 = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("trial0/metrics.json")}
    assert len(trial0) == 2 and not results(workdir) and not list((workdir / "results").rglob("trial1"))
    plan = run_cli(args + ["dry_run=true"], workdir).stdout
    assert plan.count("resume: trials [0] already done") == 2, plan
    assert "ran 2, skipped 0, failed 0" in run_cli(args, workdir).stdout
    assert {p: p.stat().st_mtime_ns for p in trial0} == trial0, "a finished trial was recomputed"
    ref = tmp_path / "ref"
    ref.mkdir()
    run_cli(args, ref)
    ours = {p.relative_to(workdir): json.loads(p.read_text())["results"] for p in results(workdir)}
    assert ours == {p.relative_to(ref): json.loads(p.read_text())["results"] for p in results(ref)}


def test_override_completed_reruns_and_keeps_the_old_result(workdir: Path) -> None:
    args = ["-m", "model=random", "task=copa_demo", "nshot=2"]
    run_cli(args, workdir)
    [old] = results(workdir)
    old_text = old.read_text()
    out = run_cli(args + ["override_completed=true"], workdir).stdout
    assert "ran 1" in out
    assert old.exists() and old.read_text() != old_text  # rewritten (new repro time)
    kept = list(old.parent.parent.glob(old.parent.name + ".old-*/results.json"))
    assert len(kept) == 1 and kept[0].read_text() == old_text


def test_failed_job_does_not_stop_the_others_and_exit_is_nonzero(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    weights = unloadable_weights(tmp_path / "weights")  # passes the planning checks, fails to load
    (conf / "model" / "broken.yaml").write_text(f"name: broken\npredictor: clm\nweights: {weights}\n")
    proc = run_cli(["-m", "model=broken,random", "task=copa_demo", "--config-dir", str(conf)], workdir, check=False)
    assert proc.returncode == 1
    assert "ran 1, skipped 0, failed 1" in proc.stdout
    assert "FAILED broken x copa_demo" in proc.stderr
    assert len(results(workdir)) == 1  # the random job finished


def test_a_trial_running_elsewhere_is_left_to_it(workdir: Path) -> None:
    """Split trials lock per trial: while another process holds trial 0, the sweep runs trial 1 only
    and does not aggregate; the next sweep runs trial 0 and completes the result."""
    from fewshot_eval.store.locks import claim_trials

    args = ["-m", "model=random", "task=copa_demo", "nshot=2", "num_trials=2", "split_trials=true"]
    [row] = {ln.split()[5] for ln in run_cli(args + ["dry_run=true"], workdir).stdout.splitlines() if ln.startswith("run ")}
    rdir = workdir / "results" / row
    with claim_trials(rdir, [0]) as held:
        assert held == [0]
        held_out = run_cli(args, workdir, check=False)
        assert held_out.returncode == 3 and "ran 1, running elsewhere 1, skipped 0, failed 0" in held_out.stdout
        assert (rdir / "trial1" / "metrics.json").exists()
        assert not (rdir / "trial0").exists() and not (rdir / "results.json").exists()
    out = run_cli(args, workdir).stdout
    assert "1 skip: complete" in out and "ran 1" in out
    assert json.loads((rdir / "results.json").read_text())["trials"] == [0, 1]

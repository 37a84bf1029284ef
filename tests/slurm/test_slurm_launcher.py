"""``hydra/launcher=submitit_slurm`` on the real test cluster, through the CLI.

Model settings of different resources live in a ``--config-dir`` (see ``conf``); every test
launches from its own directory. Jobs are held (``--hold`` via additional_parameters) where
a test needs them to sit in the queue, and released with ``scontrol release``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import run_cli

pytestmark = pytest.mark.slurm

GOLDEN = Path(__file__).parent / "golden"
HOLD = "+hydra.launcher.additional_parameters.hold=true"
MODELS = {
    "slurm_small": "name: slurm_small\npredictor: random\nmax_parallel: 1\nresources: {cpus_per_task: 1, timeout_min: 7}\n",
    "slurm_wide": "name: slurm_wide\npredictor: majority\nmax_parallel: 2\nresources: {cpus_per_task: 2, mem_gb: 1, timeout_min: 9}\n",
    # weights that pass the planning checks (a JSON config.json, a weight file) but cannot be loaded
    "slurm_broken": "name: slurm_broken\npredictor: clm\nweights: ${oc.env:FEWSHOT_TEST_BROKEN_WEIGHTS}\nresources: {timeout_min: 5}\n",
    "slurm_twonode": "name: slurm_twonode\npredictor: random\nresources: {nodes: 2, timeout_min: 5}\n",  # the cluster has one node
    "slurm_gpuq": "name: slurm_gpuq\npredictor: random\nresources: {timeout_min: 5}\n"
                  "slurm: {partition: gpu, exclusive: true, sbatch: {comment: from-the-model}, setup: ['echo model-setup-ran']}\n",
    "slurm_comb": "name: slurm_comb\npredictor: random\njob: {combine_tasks: true}\nresources: {timeout_min: 6}\n",
}


@pytest.fixture(scope="module")
def conf(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("slurmconf")
    (d / "model").mkdir()
    (d / "broken_weights").mkdir()
    (d / "broken_weights" / "config.json").write_text("{}")  # passes planning (JSON, a weight file), fails to load (no model_type)
    (d / "broken_weights" / "model.safetensors").write_text("not safetensors")
    os.environ["FEWSHOT_TEST_BROKEN_WEIGHTS"] = str(d / "broken_weights")
    for name, text in MODELS.items():
        (d / "model" / f"{name}.yaml").write_text(text)
    return d


def sweep(workdir: Path, conf: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cli(["-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", *args],
                   workdir, check=check, timeout=240)


def launched(workdir: Path, root: str = "results") -> list[dict]:
    log = workdir / root / "scheduled_jobs.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def slurm_ids(workdir: Path, cluster) -> list[str]:
    ids = [r["job_id"] for r in launched(workdir) if r["launcher"] == "SlurmPoolLauncher"]
    cluster.track(*ids)
    return ids


def scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True).stdout


def markers(workdir: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in (workdir / "results").rglob("submitted.json")}


def metrics(root: Path) -> dict[Path, dict]:
    return {f.parent.relative_to(root): json.loads(f.read_text())["results"] for f in root.rglob("results.json")}


def check_golden(name: str, text: str) -> None:
    """Compare a generated sbatch file with tests/slurm/golden/<name> (FEWSHOT_UPDATE_GOLDEN=1 rewrites it)."""
    path = GOLDEN / name
    if os.environ.get("FEWSHOT_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file:\n{text}"


def test_pools_sbatch_throttle_pending_skip_and_results(slurm_cluster, conf, workdir):
    grid = ["model=slurm_small,slurm_wide", "task=copa_demo,nli_demo,pawsx_default", "nshot=0"]
    out = sweep(workdir, conf, *grid, HOLD).stdout
    assert "submitted 6 jobs to SLURM in 2 pools" in out and "submitted 6 (SLURM" in out
    assert "squeue -j" in out and "sacct" in out and "re-run the same command" in out
    assert "pool slurm_small: array " in out and "3 tasks, at most 1 at once (1 node x 1 task x 1 cpu, 0 gpu, 7 min)" in out
    assert "3 tasks, at most 2 at once (1 node x 1 task x 2 cpu, 0 gpu, 1 GB, 9 min)" in out
    ids = slurm_ids(workdir, slurm_cluster)
    small, wide = {i.split("_")[0] for i in ids[:3]}, {i.split("_")[0] for i in ids[3:]}
    assert len(small) == len(wide) == 1 and small != wide
    small, wide = small.pop(), wide.pop()
    assert sorted(ids) == sorted([f"{small}_{i}" for i in range(3)] + [f"{wide}_{i}" for i in range(3)])

    # both pools sit in the queue at the same time, each with its own throttle
    queued = {j["array_job_id"] for j in slurm_cluster.squeue_jobs() if j["state"] == "PENDING"}
    assert {small, wide} <= queued
    assert "ArrayTaskThrottle=1" in scontrol("show", "job", small)
    assert "ArrayTaskThrottle=2" in scontrol("show", "job", wide)

    # per-pool #SBATCH parameters, paths normalised
    marks = markers(workdir)
    assert len(marks) == 6 and {m["job_id"] for m in marks.values()} == set(ids)
    sweep_dir = Path(next(iter(marks.values()))["sweep_dir"])
    for pool, array in (("slurm_small", small), ("slurm_wide", wide)):
        [script] = (sweep_dir / ".submitit" / pool).glob(f"*/{array}_submission.sh")  # .submitit/<pool>/<token>-0/
        text = re.sub(rf"(--job-name=fewshot-{pool})-[0-9a-f]{{8}}\n", r"\1-<TOKEN>\n", script.read_text())  # the submission's tag
        text = text.replace(script.parent.name, "<TOKEN>-0")
        check_golden(f"{pool}.sbatch", text.replace(str(sweep_dir), "<SWEEP>").replace(sys.executable, "<PYTHON>"))
    m = marks[next(p for p in marks if "slurm_wide" in str(p))]
    assert m["pool"] == "slurm_wide" and m["array_job_id"] == wide and m["stdout"].endswith("_0_log.out")

    # pending: the dry run says so, a second sweep submits nothing
    plan = sweep(workdir, conf, *grid, "dry_run=true").stdout
    assert plan.count("\nskip: pending ") == 6 and f"SLURM job {small}_0 is PENDING" in plan
    again = sweep(workdir, conf, *grid).stdout
    assert "6 skip: pending" in again and "Nothing to launch" in again
    assert len(launched(workdir)) == 6

    # release: never more than max_parallel tasks of a pool at once, the two pools side by side
    scontrol("release", small, wide)
    peak = {small: 0, wide: 0}
    together = throttled = False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = [j for j in slurm_cluster.squeue_jobs() if j["array_job_id"] in peak]
        if not rows:
            break
        running = {a: sum(1 for j in rows if j["array_job_id"] == a and j["state"] == "RUNNING") for a in peak}
        peak = {a: max(peak[a], running[a]) for a in peak}
        together |= all(running.values())
        throttled |= any(j["reason"] == "JobArrayTaskLimit" for j in rows)
        time.sleep(0.1)
    assert peak[small] == 1 and 1 <= peak[wide] <= 2 and throttled, peak
    for i in ids:
        slurm_cluster.wait_for_state(i, "COMPLETED", timeout=30)
    intervals = {a: [] for a in peak}
    for a in peak:
        for row in subprocess.run(["sacct", "-n", "-X", "-P", "-j", a, "-o", "JobID,State,Start,End"],
                                  capture_output=True, text=True).stdout.splitlines():
            jid, state, start, end = row.split("|")
            assert state == "COMPLETED", row
            intervals[a].append((start, end))
    s = sorted(intervals[small])
    assert all(s[i][1] <= s[i + 1][0] for i in range(len(s) - 1)), s  # %1: one after the other
    together |= any(a0 < b1 and b0 < a1 for a0, a1 in intervals[small] for b0, b1 in intervals[wide])
    assert together, "the two pools never ran at the same time"

    assert not markers(workdir) and len(metrics(workdir / "results")) == 6
    # what a job got is in its .hydra/hydra.yaml
    hydra_yaml = (sweep_dir / "3" / ".hydra" / "hydra.yaml").read_text()
    assert "hydra.launcher.cpus_per_task=2" in hydra_yaml and "hydra.launcher.array_parallelism=2" in hydra_yaml
    third = sweep(workdir, conf, *grid).stdout
    assert "6 skip: complete" in third and "Nothing to launch" in third

    # the same numbers as a local run
    run_cli(["-m", "--config-dir", str(conf), *grid, "output_dir=local"], workdir)
    assert metrics(workdir / "results") == metrics(workdir / "local")


def test_cancelled_and_failed_jobs_are_resubmitted_with_the_reason(slurm_cluster, conf, workdir):
    grid = ["model=slurm_small,slurm_broken", "task=copa_demo", "nshot=0"]
    sweep(workdir, conf, *grid, HOLD)
    small, broken = slurm_ids(workdir, slurm_cluster)  # one job per pool: plain job ids
    assert "_" not in small + broken
    subprocess.run(["scancel", small], check=True)
    scontrol("release", broken)
    slurm_cluster.wait_for_state(small, "CANCELLED", timeout=30)
    slurm_cluster.wait_for_state(broken, "FAILED", timeout=90)

    plan = sweep(workdir, conf, *grid, "dry_run=true").stdout
    assert plan.count("\nrun ") == 2, plan
    assert f"resubmit: SLURM job {small} was CANCELLED" in plan
    assert f"resubmit: SLURM job {broken} was FAILED (log: " in plan
    assert f"{broken}_0_log.err); last error: " in plan, plan  # the log with the traceback, and its last error line

    proc = sweep(workdir, conf, *grid, "hydra.launcher.wait=true", check=False)
    assert proc.returncode == 1 and "ran 1, skipped 0, failed 1" in proc.stdout, proc.stdout + proc.stderr
    assert "FAILED slurm_broken x copa_demo nshot=0: SLURM job " in proc.stderr, proc.stderr  # with the job's last error
    new = slurm_ids(workdir, slurm_cluster)[2:]
    assert len(new) == 2 and not set(new) & {small, broken}
    [left] = markers(workdir).values()  # the failed job's marker stays, pointing at the new job
    assert left["job_id"] in new and left["pool"] == "slurm_broken"
    # each SLURM failure is recorded once (by the job on the node, or by the planner from sacct) ...
    [record] = (workdir / "results").rglob("failure.json")
    attempts = json.loads(record.read_text())["attempts"]
    assert [a["job_id"] for a in attempts] == [broken, left["job_id"]], attempts
    # ... and resubmission obeys the failure limit like local runs
    slurm_cluster.wait_for_state(left["job_id"], "FAILED", timeout=30)  # its result is back a moment before SLURM says so
    plan = sweep(workdir, conf, *grid, "dry_run=true", "max_failures=2").stdout
    assert "\nfailed " in plan and "failed 2×" in plan, plan


def test_combine_tasks_runs_one_slurm_job_and_skips_complete_results(slurm_cluster, conf, workdir):
    run_cli(["-m", "--config-dir", str(conf), "model=slurm_comb", "task=copa_demo", "nshot=0"], workdir)  # one done locally
    out = sweep(workdir, conf, "model=slurm_comb", "task=copa_demo,nli_demo", "nshot=0,2", "hydra.launcher.wait=true").stdout
    assert "3 run, 1 skip: complete" in out and "ran 3, skipped 1, failed 0" in out
    ids = slurm_ids(workdir, slurm_cluster)
    assert len(ids) == 3 and len(set(ids)) == 1 and "_" not in ids[0]
    slurm_cluster.wait_for_state(ids[0], "COMPLETED", timeout=30)  # accounting lags a little behind
    assert [r["state"] for r in slurm_cluster.sacct_rows(ids[0])] == ["COMPLETED"]
    sbatch = next((workdir / "results").glob(f".hydra_sweeps/*/.submitit/slurm_comb/*/{ids[0]}_submission.sh")).read_text()
    assert "--array" not in sbatch and "#SBATCH --time=6" in sbatch
    assert len(metrics(workdir / "results")) == 4 and not markers(workdir)


def test_requeue_after_timeout_signal_keeps_finished_trials(slurm_cluster, workdir):
    """USR2 is what SLURM sends signal_delay_s before the time limit; with timeout_min < 10 submitit
    counts it as a timeout: it checkpoints (our launcher) and requeues, bounded by max_num_timeout.
    The requeued job runs only the missing trials."""
    # enough work that the job is still running when USR2 arrives (batch_size=1: one forward call per prompt)
    args = ["-m", "model=tiny_gpt2", "task=copa_demo", "nshot=2", "num_trials=20", "batch_size=1", "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=5", "hydra.launcher.max_num_timeout=1"]
    run_cli(args, workdir)
    [job] = slurm_ids(workdir, slurm_cluster)
    trial0 = slurm_cluster.wait_until(lambda: next((workdir / "results").glob("*/tiny_gpt2/copa_demo/*/trial0/metrics.json"), None),
                                      timeout=90, what="trial 0")
    rdir, first = trial0.parent.parent, trial0.stat().st_mtime_ns
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    requeued = lambda: re.search(r"JobState=PENDING Reason=BeginTime.*Restarts=1", scontrol("show", "job", job), re.S)  # noqa: E731
    slurm_cluster.wait_until(requeued, timeout=30, what="the requeue")
    assert not (rdir / "results.json").exists(), "the job had finished before the signal"
    plan = run_cli(args + ["dry_run=true"], workdir).stdout
    assert "skip: pending" in plan and f"SLURM job {job} is" in plan
    scontrol("update", f"JobId={job}", "StartTime=now")  # SLURM delays a requeued job by ~2 min
    slurm_cluster.wait_for_state(job, "COMPLETED", timeout=90)
    assert trial0.stat().st_mtime_ns == first, "a finished trial was recomputed"
    assert json.loads((rdir / "results.json").read_text())["trials"] == list(range(20))
    text = Path(launched(workdir)[0]["stdout"]).read_text()
    assert "this job is timed-out" in text and f"Requeued job {job}" in text
    done = re.findall(r"done tiny_gpt2 x copa_demo nshot=2: trials \[([\d, ]+)\]", text)
    assert done and "0" not in done[-1].split(", "), done


def test_ctrl_c_while_waiting_leaves_the_jobs_queued_and_recorded(slurm_cluster, conf, workdir):
    cmd = [sys.executable, "-m", "fewshot_eval", "-m", "--config-dir", str(conf), "model=slurm_small", "task=copa_demo", "nshot=0",
           "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", "hydra.launcher.wait=true", HOLD]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        slurm_cluster.wait_until(lambda: markers(workdir), timeout=60, what="the submission")
        [job] = slurm_ids(workdir, slurm_cluster)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "stopped waiting" in out and "keep running" in out, out
    assert [j["state"] for j in slurm_cluster.squeue_jobs() if j["id"] == job] == ["PENDING"]
    [m] = markers(workdir).values()
    assert m["job_id"] == job
    plan = sweep(workdir, conf, "model=slurm_small", "task=copa_demo", "nshot=0", "dry_run=true").stdout
    assert f"SLURM job {job} is PENDING" in plan
    slurm_cluster.cancel(job)


def test_a_pool_above_max_array_size_is_split_and_tracked_as_one(slurm_cluster, conf, workdir):
    """The test cluster's MaxArraySize is 8 (.ci/slurm/cluster.sh): 10 split-trial jobs of one pool
    go out as arrays of 8 and 2; the next sweep skips all 10 as pending."""
    limit = int(re.search(r"MaxArraySize\s*=\s*(\d+)", scontrol("show", "config")).group(1))
    assert limit == 8
    grid = ["model=slurm_small", "task=copa_demo", "nshot=1", "num_trials=10", "split_trials=true"]
    out = sweep(workdir, conf, *grid, HOLD).stdout
    ids = slurm_ids(workdir, slurm_cluster)
    arrays = sorted({i.split("_")[0] for i in ids}, key=int)
    assert len(ids) == 10 and len(arrays) == 2, ids
    assert sorted(i for i in ids if i.startswith(arrays[0] + "_")) == sorted(f"{arrays[0]}_{k}" for k in range(8))
    assert sorted(i for i in ids if i.startswith(arrays[1] + "_")) == [f"{arrays[1]}_0", f"{arrays[1]}_1"]
    assert f"arrays {arrays[0]}, {arrays[1]}: 10 tasks in 2 arrays of at most 8 (MaxArraySize)" in out, out
    [m] = markers(workdir).values()
    assert sorted(j["job_id"] for j in m["jobs"]) == sorted(ids)
    plan = sweep(workdir, conf, *grid, "dry_run=true").stdout
    assert plan.count("\nskip: pending ") == 10, plan
    assert f"SLURM job {arrays[1]}_1 is PENDING" in plan
    slurm_cluster.cancel(*arrays)


def test_a_refused_submission_leaves_no_files_and_is_printed_once(slurm_cluster, conf, workdir):
    grid = ["model=slurm_small", "task=copa_demo", "nshot=0,1,2"]
    proc = run_cli(["-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm", "hydra.launcher.partition=nosuchpart", *grid],
                   workdir, check=False, timeout=240)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "pool slurm_small: NOT submitted (3 jobs)" in text, text
    assert text.count("invalid partition") == 1 or text.lower().count("invalid partition") == 1, text
    leftovers = [p for p in (workdir / "results").rglob(".submitit/*") if p.is_file() or any(p.iterdir())]
    assert not leftovers, leftovers
    assert not list((workdir / "results").rglob("*.pkl")) and not markers(workdir)


def test_a_sweep_killed_right_after_sbatch_is_reconciled_without_a_duplicate(slurm_cluster, conf, workdir):
    """SIGKILL between sbatch's answer and the markers: the pool's record (written before sbatch) names the
    array's job, the next sweep finds it in the queue, adopts it (submitted.json) and submits nothing.
    A dry run only shows it pending: the adoption is written by the next sweep that is not a dry run."""
    grid = ["model=slurm_small", "task=copa_demo,nli_demo", "nshot=0"]
    proc = run_cli(["-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", *grid, HOLD],
                   workdir, check=False, timeout=240, env={"FEWSHOT_FAULT": "kill-after-sbatch"})
    assert proc.returncode == -9 or proc.returncode == 137, proc.stdout + proc.stderr
    assert not markers(workdir) and not launched(workdir)
    [record] = [json.loads(p.read_text()) for p in (workdir / "results" / ".slurm_submissions").glob("*.json")]
    [array_record] = record["arrays"]
    assert array_record["job_id"] is None and array_record["job_name"].startswith("fewshot-slurm_small-") and len(array_record["tasks"]) == 2
    queued = [j for j in slurm_cluster.squeue_jobs() if j["name"] == array_record["job_name"]]
    assert queued, "the array was submitted"
    array = queued[0]["array_job_id"]
    slurm_cluster.track(array)
    plan = sweep(workdir, conf, *grid, "dry_run=true").stdout
    assert plan.count("\nskip: pending ") == 2 and f"SLURM job {array}_0 is PENDING" in plan, plan
    assert not markers(workdir)  # a dry run writes nothing
    again = sweep(workdir, conf, *grid).stdout
    assert "2 skip: pending" in again and "Nothing to launch" in again
    assert {m["job_id"] for m in markers(workdir).values()} == {f"{array}_0", f"{array}_1"}
    [record] = [json.loads(p.read_text()) for p in (workdir / "results" / ".slurm_submissions").glob("*.json")]
    assert record["arrays"][0]["job_id"] == array
    assert [j for j in slurm_cluster.squeue_jobs() if j["name"].startswith("fewshot-slurm_small")] and \
        {j["array_job_id"] for j in slurm_cluster.squeue_jobs() if j["name"].startswith("fewshot-slurm_small")} == {array}
    slurm_cluster.cancel(array)


def test_two_sweeps_started_together_submit_each_job_once(slurm_cluster, conf, workdir):
    grid = ["model=slurm_small,slurm_wide", "task=copa_demo,nli_demo", "nshot=0"]
    cmd = [sys.executable, "-m", "fewshot_eval", "-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm",
           "hydra.launcher.partition=debug", *grid, HOLD]
    procs = [subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ids = slurm_ids(workdir, slurm_cluster)
    assert len(ids) == 4 == len(set(ids)), (ids, outs)
    ours = {j["array_job_id"] for j in slurm_cluster.squeue_jobs() if j["name"].startswith(("fewshot-slurm_small", "fewshot-slurm_wide"))}
    assert ours == {i.split("_")[0] for i in ids}, (ours, ids)
    assert len(markers(workdir)) == 4
    slurm_cluster.cancel(*ours)


def test_a_job_that_can_never_start_is_flagged(slurm_cluster, conf, workdir):
    grid = ["model=slurm_twonode", "task=copa_demo", "nshot=0"]
    sweep(workdir, conf, *grid)
    [job] = slurm_ids(workdir, slurm_cluster)
    slurm_cluster.wait_until(lambda: any(j["id"] == job and j["reason"] == "PartitionNodeLimit" for j in slurm_cluster.squeue_jobs()),
                             timeout=30, what="the PartitionNodeLimit reason")
    plan = sweep(workdir, conf, *grid, "dry_run=true").stdout
    assert f"SLURM job {job} is PENDING (PartitionNodeLimit) — will never start: more nodes than the partition allows" in plan, plan
    slurm_cluster.cancel(job)


def test_per_model_scheduler_options_reach_sbatch(slurm_cluster, conf, workdir):
    grid = ["model=slurm_gpuq", "task=copa_demo", "nshot=0"]
    run_cli(["-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm", *grid, HOLD], workdir, timeout=240)
    [job] = slurm_ids(workdir, slurm_cluster)
    info = scontrol("show", "job", job)
    assert "Partition=gpu" in info and "Comment=from-the-model" in info and "OverSubscribe=NO" in info, info
    [m] = markers(workdir).values()
    script = (Path(m["submitit_folder"]) / f"{job}_submission.sh").read_text()
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --exclusive" in script and "echo model-setup-ran" in script
    assert m["cluster"] == "fewshot"
    slurm_cluster.cancel(job)


def test_with_slurm_down_the_plan_prints_in_seconds(slurm_cluster, conf, workdir, tmp_path):
    """slurmctld and slurmdbd unreachable (a copy of the cluster's slurm.conf pointing at closed ports:
    squeue alone takes 18 s to give up there). 9 result dirs with markers of 9 different arrays: one
    short probe of each tool, not 9 x 18 s."""
    grid = ["model=slurm_small", "task=copa_demo,nli_demo,pawsx_default", "nshot=0,1,2"]
    dry = sweep(workdir, conf, *grid, "dry_run=true").stdout
    rdirs = [workdir / "results" / ln.split()[5] for ln in dry.splitlines() if ln.startswith("run ")]
    assert len(rdirs) == 9
    for k, rdir in enumerate(rdirs):
        rdir.mkdir(parents=True)
        (rdir / "submitted.json").write_text(json.dumps({"job_id": f"{90000 + k}_0", "trials": [0], "stdout": "/logs/x_0_log.out"}))
    dead = tmp_path / "dead"
    dead.mkdir()
    text = slurm_cluster.conf.read_text()
    text = re.sub(r"(?m)^SlurmctldPort=.*$", "SlurmctldPort=1", text)
    text = re.sub(r"(?m)^AccountingStoragePort=.*$", "AccountingStoragePort=2", text)
    (dead / "slurm.conf").write_text(text)
    (dead / "gres.conf").write_text((slurm_cluster.conf.parent / "gres.conf").read_text())
    t0 = time.monotonic()
    proc = run_cli(["-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm", *grid, "dry_run=true"], workdir,
                   env={"SLURM_CONF": str(dead / "slurm.conf")}, timeout=240)
    took = time.monotonic() - t0
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("skip: pending ")]
    assert len(rows) == 9 and all("SLURM cannot be reached" in r for r in rows), proc.stdout
    assert proc.stdout.count("squeue cannot be reached") == 1 and proc.stdout.count("sacct cannot be reached") == 1  # said once
    assert took < 15, took
    print(f"plan of 9 result dirs with SLURM down: {took:.1f}s")


def test_a_job_out_of_requeues_is_reported_as_timed_out_and_counted(slurm_cluster, workdir):
    """max_num_timeout=0: the first USR2 (what SLURM sends signal_delay_s before the limit) ends the job
    FAILED with submitit's 'timed-out too many times'; the plan says 'timed out 1× — raise timeout_min'
    and records it as a failed attempt (max_failures=1: not resubmitted)."""
    # enough work that the job is still running when USR2 arrives (batch_size=1: one forward call per prompt)
    args = ["-m", "model=tiny_gpt2", "task=copa_demo", "nshot=2", "num_trials=40", "batch_size=1", "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=5", "hydra.launcher.max_num_timeout=0"]
    run_cli(args, workdir)
    [job] = slurm_ids(workdir, slurm_cluster)
    slurm_cluster.wait_until(lambda: next((workdir / "results").glob("*/tiny_gpt2/copa_demo/*/trial0/metrics.json"), None),
                             timeout=120, what="trial 0")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    slurm_cluster.wait_for_state(job, "FAILED", timeout=60)
    plan = run_cli(args + ["dry_run=true", "max_failures=1"], workdir).stdout
    assert f"SLURM job {job} timed out 1× — raise timeout_min" in plan and "\nfailed " in plan, plan
    [record] = (workdir / "results").rglob("failure.json")
    attempts = lambda: [a["error"] for a in json.loads(record.read_text())["attempts"]]  # noqa: E731
    assert attempts() == ["UncompletedJobError: Job not requeued because: timed-out too many times."]  # a dry run writes nothing
    out = run_cli(args + ["max_failures=1"], workdir, check=False)
    assert out.returncode == 1 and "failed, not relaunched" in out.stderr, out.stdout + out.stderr
    assert attempts() == [f"SLURM job {job} timed out 1× — raise timeout_min"]

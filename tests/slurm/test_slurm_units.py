"""The SLURM launcher's parts that need no cluster: config selection, pools and their sbatch
parameters, and the pending/resubmit decision against fake ``squeue``/``sacct`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.launch.slurm import job_states, probes
from fewshot_eval.launch.slurm import pending_check as pending
from fewshot_eval.launch.slurm.pools import Pool, executor_parameters, hydra_overrides, make_pools, pool_folder
from fewshot_eval.launch.slurm.waiting import error_line

FAKE = """#!/bin/sh
# fake {name}: prints $FAKE_{NAME} (escapes allowed), $FAKE_{NAME}_ERR on stderr, exits $FAKE_{NAME}_RC
printf '%b' "$FAKE_{NAME}"
[ -n "$FAKE_{NAME}_ERR" ] && printf '%s\\n' "$FAKE_{NAME}_ERR" >&2
exit ${{FAKE_{NAME}_RC:-0}}
"""
UNREACHABLE = {"FAKE_SQUEUE_RC": "1", "FAKE_SQUEUE_ERR": "slurm_load_jobs error: Unable to contact slurm controller",
               "FAKE_SACCT_RC": "1", "FAKE_SACCT_ERR": "sacct: error: Problem talking to the database"}


@pytest.fixture(autouse=True)
def fresh_probes():
    """What a process learnt about SLURM's daemons (down, answered) is per sweep: forget it between tests."""
    probes.reset()
    yield
    probes.reset()


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """squeue/sacct on PATH that print what FAKE_SQUEUE / FAKE_SACCT say; returns the env for a subprocess."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name in ("squeue", "sacct"):
        (bin_dir / name).write_text(FAKE.format(name=name, NAME=name.upper()))
        (bin_dir / name).chmod(0o755)
    path = f"{bin_dir}:{__import__('os').environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    for k in ("FAKE_SQUEUE", "FAKE_SACCT", *UNREACHABLE):
        monkeypatch.delenv(k, raising=False)
    return {"PATH": path}


def write_marker(rdir: Path, job_id: str = "12_3", jobs: list | None = None) -> None:
    rdir.mkdir(parents=True, exist_ok=True)
    m = {"job_id": job_id, "trials": [0, 1, 2], "stdout": f"/logs/{job_id}_0_log.out"}
    if jobs is not None:
        m["jobs"] = jobs
    (rdir / "submitted.json").write_text(json.dumps(m))


def decide(rdir: Path, trials=None, override=False, local=False) -> tuple[bool, str]:
    p = pending.pending_reason(rdir, trials, override, states=job_states.SlurmStates(ttl_s=0), local_launcher=local)
    return p.pending, p.note


# ---- which launcher hydra/launcher=... gives ------------------------------------------------
def test_submitit_slurm_is_ours_without_schema_warning(workdir: Path) -> None:
    proc = run_cli(["--cfg", "hydra", "hydra/launcher=submitit_slurm"], workdir)
    assert "_target_: hydra_plugins.fewshot_eval_plugins.slurm_launcher.SlurmPoolLauncher" in proc.stdout
    for line in ("mail_type: FAIL", "wait: false", "max_num_timeout: 3", "cpus_per_task: null", "partition: null"):
        assert line in proc.stdout
    assert "deprecated" not in proc.stderr and "schema" not in proc.stderr, proc.stderr
    # timeout_min takes minutes or 'auto' (plan/estimates.py): anything else is refused at planning
    bad = run_cli(["-m", "model=random", "task=copa_demo", "hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=soon", "dry_run=true"],
                  workdir, check=False)
    assert bad.returncode == 2 and "hydra.launcher.timeout_min must be a number of minutes or 'auto'" in bad.stderr and "'soon'" in bad.stderr, bad.stderr
    local = run_cli(["--cfg", "hydra", "hydra/launcher=submitit_local"], workdir).stdout
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher" in local


# ---- pools and their parameters ---------------------------------------------------------------
def info(pool: str, limit: int = 2, combine: bool = False, **res) -> dict:
    resources = {"nodes": 1, "gpus_per_node": 0, "tasks_per_node": 1, "cpus_per_task": 1, "mem_gb": None, "timeout_min": 10, **res}
    return {"pool": pool, "max_parallel": limit, "resources": resources, "combine_tasks": combine}


def test_pools_group_by_model_and_resources() -> None:
    pools = make_pools([info("a"), info("b", 3), info("a"), info("a", cpus_per_task=4)])
    assert [(p.name, p.limit, p.members) for p in pools] == [("a", 2, [0, 2]), ("b", 3, [1]), ("a-2", 2, [3])]
    assert pools[2].resources["cpus_per_task"] == 4


def test_executor_parameters_model_resources_launcher_values_and_throttle() -> None:
    params = {"name": "fewshot", "partition": "dev", "cpus_per_task": None, "timeout_min": None, "mem_gb": None, "nodes": None,
              "gpus_per_node": None, "tasks_per_node": None, "array_parallelism": 256, "mail_type": "FAIL", "mail_user": "me@x",
              "additional_parameters": {"begin": "now+1hour"}, "setup": None, "signal_delay_s": 120, "qos": None,
              "submitit_folder": "x/%j", "max_num_timeout": 3, "wait": False, "stderr_to_stdout": False}
    pool = Pool("big", 3, info("big", gpus_per_node=2, cpus_per_task=8, mem_gb=64, timeout_min=240)["resources"], False)
    p = executor_parameters(params, pool)
    assert p["cpus_per_task"] == 8 and p["gpus_per_node"] == 2 and p["mem_gb"] == 64 and p["timeout_min"] == 240
    assert p["slurm_array_parallelism"] == 3 and p["name"] == "fewshot-big" and p["slurm_partition"] == "dev"
    assert p["slurm_mail_type"] == "FAIL" and p["slurm_mail_user"] == "me@x"
    assert p["slurm_additional_parameters"] == {"begin": "now+1hour"} and "slurm_qos" not in p and "slurm_wait" not in p
    p = executor_parameters({**params, "timeout_min": 5, "array_parallelism": 2}, pool)  # launcher values win
    assert p["timeout_min"] == 5 and p["slurm_array_parallelism"] == 2
    assert "gpus_per_node" not in executor_parameters(params, Pool("cpu", 1, info("cpu")["resources"], False))
    assert "hydra.launcher.cpus_per_task=8" in hydra_overrides(params, pool)
    assert "hydra.launcher.array_parallelism=3" in hydra_overrides(params, pool)
    assert pool_folder("out/.submitit/%j", "big") == "out/.submitit/big/%j"


def test_error_line_picks_the_jobs_exception() -> None:
    e = RuntimeError("Job (task=0) failed during processing with trace:\n----------------------\nTraceback (most recent call last):\n"
                     "  File x\nOSError: no weights at /w\n\n----------------------\nYou can check full logs ...\n  - /a.err")
    assert error_line(e) == "OSError: no weights at /w"
    assert error_line(RuntimeError("Job 5 has not produced any output (state: CANCELLED by 0)\nmore")).startswith("Job 5 has not")


# ---- pending or resubmit ----------------------------------------------------------------------
def test_expand_array_ranges() -> None:
    assert job_states._expand("12_[1-3,5%2]") == ["12_1", "12_2", "12_3", "12_5"]
    assert job_states._expand("12_4") == ["12_4"] and job_states._expand("12") == ["12"]


def test_queued_or_running_is_pending(tmp_path: Path, fake_slurm, monkeypatch) -> None:
    write_marker(tmp_path / "r")
    monkeypatch.setenv("FAKE_SQUEUE", "12_2|RUNNING\\n12_3|RUNNING\\n")
    assert decide(tmp_path / "r") == (True, "SLURM job 12_3 is RUNNING")
    monkeypatch.setenv("FAKE_SQUEUE", "12_[3-5%2]|PENDING\\n")  # without -r a remainder is one row
    assert decide(tmp_path / "r") == (True, "SLURM job 12_3 is PENDING")


@pytest.mark.parametrize("sacct, note", [
    ("12_3|CANCELLED by 0\n", "resubmit: SLURM job 12_3 was CANCELLED"),
    ("12|CANCELLED by 0\n", "resubmit: SLURM job 12_3 was CANCELLED"),  # the whole array, cancelled while queued
    ("12_3|FAILED\n", "resubmit: SLURM job 12_3 was FAILED (log: /logs/12_3_0_log.out)"),
    ("12_3|TIMEOUT\n", "resubmit: SLURM job 12_3 timed out 1× — raise timeout_min (log: /logs/12_3_0_log.out)"),
    ("12_3|OUT_OF_MEMORY\n", "resubmit: SLURM job 12_3 was OUT_OF_MEMORY (log: /logs/12_3_0_log.out)"),
    ("12_3|COMPLETED\n", "resubmit: SLURM job 12_3 COMPLETED without a complete result (log: /logs/12_3_0_log.out)"),
    ("", "resubmit: SLURM has no record of job 12_3 (cancelled while queued, or purged)"),
])
def test_ended_jobs_are_resubmitted_with_the_reason(tmp_path: Path, fake_slurm, monkeypatch, sacct, note) -> None:
    write_marker(tmp_path / "r")
    monkeypatch.setenv("FAKE_SQUEUE_RC", "1")
    monkeypatch.setenv("FAKE_SQUEUE_ERR", "slurm_load_jobs error: Invalid job id specified")
    monkeypatch.setenv("FAKE_SACCT", sacct)
    assert decide(tmp_path / "r") == (False, note)


def test_unreachable_slurm_is_pending_unless_override(tmp_path: Path, fake_slurm, monkeypatch) -> None:
    write_marker(tmp_path / "r")
    for k, v in UNREACHABLE.items():
        monkeypatch.setenv(k, v)
    is_pending, note = decide(tmp_path / "r")
    assert is_pending and "cannot be reached" in note and "Unable to contact" in note and "override_completed=true" in note
    is_pending, note = decide(tmp_path / "r", override=True)
    assert not is_pending and note.startswith("resubmit:")


def test_split_trials_look_up_their_own_job(tmp_path: Path, fake_slurm, monkeypatch) -> None:
    write_marker(tmp_path / "r", "12_0", jobs=[{"job_id": "12_0", "trials": [0]}, {"job_id": "12_1", "trials": [1]}])
    monkeypatch.setenv("FAKE_SQUEUE", "12_1|RUNNING\\n")
    monkeypatch.setenv("FAKE_SACCT", "12_0|FAILED\\n12_1|RUNNING\\n")
    assert decide(tmp_path / "r", [1]) == (True, "SLURM job 12_1 is RUNNING")
    assert decide(tmp_path / "r", [0])[1].startswith("resubmit: SLURM job 12_0 was FAILED")


def test_plan_shows_pending_and_resubmit_notes(workdir: Path, fake_slurm) -> None:
    args = ["-m", "model=random", "task=copa_demo,nli_demo", "nshot=0", "dry_run=true"]
    rows = [ln.split() for ln in run_cli(args, workdir, env=fake_slurm).stdout.splitlines() if ln.startswith("run ")]
    rdirs = [workdir / "results" / r[5] for r in rows]
    write_marker(rdirs[0], "7_0")
    write_marker(rdirs[1], "7_1")
    env = {**fake_slurm, "FAKE_SQUEUE": "7_0|PENDING\\n", "FAKE_SACCT": "7_1|NODE_FAIL\\n"}
    plan = run_cli(args, workdir, env=env).stdout
    assert "skip: pending" in plan and "SLURM job 7_0 is PENDING" in plan
    assert "resubmit: SLURM job 7_1 was NODE_FAIL" in plan and "(1 skip: pending, 1 run)" in plan.replace("1 run, 1 skip: pending", "1 skip: pending, 1 run")
    out = run_cli(args[:-1], workdir, env=env).stdout  # the local launcher runs the resubmitted one, not the pending one
    assert "ran 1, skipped 1, failed 0" in out
    assert not (rdirs[1] / "submitted.json").exists() and (rdirs[1] / "results.json").exists()
    assert (rdirs[0] / "submitted.json").exists() and not (rdirs[0] / "results.json").exists()


def test_a_finished_split_trial_leaves_the_other_trials_marked(workdir: Path, fake_slurm) -> None:
    """Trial 0's job failed, trial 1's still runs: the sweep reruns trial 0 only and keeps trial 1's record."""
    args = ["-m", "model=random", "task=copa_demo", "nshot=2", "num_trials=2", "split_trials=true"]
    rows = [ln.split() for ln in run_cli(args + ["dry_run=true"], workdir, env=fake_slurm).stdout.splitlines() if ln.startswith("run ")]
    rdir = workdir / "results" / rows[0][5]
    write_marker(rdir, "12_0", jobs=[{"job_id": "12_0", "trials": [0]}, {"job_id": "12_1", "trials": [1]}])
    env = {**fake_slurm, "FAKE_SQUEUE": "12_1|RUNNING\\n", "FAKE_SACCT": "12_0|FAILED\\n12_1|RUNNING\\n"}
    out = run_cli(args, workdir, env=env).stdout
    assert "ran 1, skipped 1, failed 0" in out
    marker = json.loads((rdir / "submitted.json").read_text())
    assert [j["job_id"] for j in marker["jobs"]] == ["12_1"] and marker["job_id"] == "12_1"
    assert (rdir / "trial0" / "metrics.json").exists() and not (rdir / "results.json").exists()
    plan = run_cli(args + ["dry_run=true"], workdir, env=env).stdout
    assert "SLURM job 12_1 is RUNNING" in plan and "(1 skip: pending)" in plan.replace("1 skip: complete, ", "")


def test_slurm_down_is_probed_once_per_sweep(tmp_path: Path, monkeypatch) -> None:
    """squeue/sacct that hang (controller and accounting down): one short probe of each, side by side,
    then every other result dir is answered at once -- 40 arrays in about one probe timeout."""
    import time

    bin_dir = tmp_path / "hangbin"
    bin_dir.mkdir()
    for name in ("squeue", "sacct"):
        (bin_dir / name).write_text(f"#!/bin/sh\necho called >> {tmp_path}/{name}.calls\nsleep 60\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("FEWSHOT_SLURM_PROBE_S", "1")
    states = job_states.SlurmStates(ttl_s=0)
    t0 = time.monotonic()
    for a in range(40):
        write_marker(tmp_path / f"r{a}", f"{a}_0")
        p = pending.pending_reason(tmp_path / f"r{a}", states=states)
        assert p.pending and "cannot be reached" in p.note and "did not answer in time" in p.note
    assert time.monotonic() - t0 < 5
    assert set(states.down) == {"squeue", "sacct"}
    assert (tmp_path / "squeue.calls").read_text().count("called") == 1
    assert (tmp_path / "sacct.calls").read_text().count("called") == 1


def test_a_job_that_ran_out_of_requeues_is_reported_as_timed_out(tmp_path: Path, fake_slurm, monkeypatch) -> None:
    rdir = tmp_path / "r"
    write_marker(rdir, "12_3")
    err, out = tmp_path / "12_3_0_log.err", tmp_path / "12_3_0_log.out"
    out.write_text("".join(f"submitit WARNING (2026-11-29 12:1{k}:40,724) - Caught signal SIGUSR2 on n1: this job is timed-out.\n"
                           f"[2026-11-29 12:1{k}:40,724][submitit][WARNING] - Caught signal SIGUSR2 on n1: this job is timed-out.\n" for k in range(4))
                   + "Job not requeued because: timed-out too many times.\n")
    err.write_text("submitit WARNING: ...\nsubmitit.core.utils.UncompletedJobError: Job not requeued because: timed-out too many times.\n")
    m = json.loads((rdir / "submitted.json").read_text())
    (rdir / "submitted.json").write_text(json.dumps({**m, "stdout": str(out), "stderr": str(err)}))
    monkeypatch.setenv("FAKE_SACCT", "12_3|FAILED\\n")
    p = pending.pending_reason(rdir, states=job_states.SlurmStates(ttl_s=0))
    assert not p.pending and p.note == f"resubmit: SLURM job 12_3 timed out 4× — raise timeout_min (log: {err})"
    assert p.failure == {"job_id": "12_3", "error": "SLURM job 12_3 timed out 4× — raise timeout_min", "log": str(err), "retitle": True}
    # a plain failure shows the last error line of the job's stderr
    err.write_text("Traceback (most recent call last):\n  File x\nOSError: no weights at /w\nsrun: error: n1: task 0: Exited\n")
    out.write_text("")
    p = pending.pending_reason(rdir, states=job_states.SlurmStates(ttl_s=0))
    assert p.note == f"resubmit: SLURM job 12_3 was FAILED (log: {err}); last error: OSError: no weights at /w"


@pytest.mark.parametrize("timeout, delay, ok", [(3, 120, False), (4, 120, True), (2, 0, True), (1, 0, False), (5, 180, True), (4, 180, False)])
def test_time_limit_rule(timeout, delay, ok) -> None:
    from fewshot_eval.settings import time_limit_problem

    assert (time_limit_problem(timeout, delay) is None) == ok


def test_a_too_short_time_limit_is_rejected_at_planning(workdir: Path, fake_slurm) -> None:
    args = ["-m", "model=random", "task=copa_demo", "nshot=0", "hydra/launcher=submitit_slurm", "dry_run=true"]
    proc = run_cli(args + ["hydra.launcher.timeout_min=3"], workdir, env=fake_slurm, check=False)
    assert proc.returncode == 2 and "timeout_min=3 leaves no work time" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "timeout_min >= 4" in proc.stdout + proc.stderr
    assert run_cli(args + ["hydra.launcher.timeout_min=4"], workdir, env=fake_slurm).returncode == 0
    assert run_cli(args + ["hydra.launcher.timeout_min=3", "hydra.launcher.signal_delay_s=30"], workdir, env=fake_slurm).returncode == 0


@pytest.mark.parametrize("row, note", [
    ("12_3|PENDING|Priority\\n", "SLURM job 12_3 is PENDING (Priority)"),
    ("12_3|PENDING|JobHeldUser\\n", "SLURM job 12_3 is PENDING (held: JobHeldUser; scontrol release 12 starts it)"),
    ("12_[3-5]|PENDING|PartitionConfig\\n", "SLURM job 12_3 is PENDING (PartitionConfig) — will never start: the partition cannot give "
     "what it asks (nodes, GPUs, CPUs or account/QOS); scancel 12 and fix the model's resources or hydra.launcher options"),
    ("12_3|PENDING|ReqNodeNotAvail, UnavailableNodes:n[1-2]\\n", "SLURM job 12_3 is PENDING (ReqNodeNotAvail) — will never start: a "
     "required node is unavailable (down, drained or reserved); scancel 12 and fix the model's resources or hydra.launcher options"),
    ("12_3|RUNNING|None\\n", "SLURM job 12_3 is RUNNING"),
])
def test_pending_reasons_are_shown_and_hopeless_ones_flagged(tmp_path: Path, fake_slurm, monkeypatch, row, note) -> None:
    write_marker(tmp_path / "r")
    monkeypatch.setenv("FAKE_SQUEUE", row)
    assert decide(tmp_path / "r") == (True, note)


def test_per_model_scheduler_options_land_in_the_sbatch_script(tmp_path: Path) -> None:
    import submitit

    from fewshot_eval.settings import model_setting

    model = model_setting({"name": "big", "predictor": "random", "resources": {"gpus_per_node": 2, "timeout_min": 30},
                           "slurm": {"partition": "a100", "account": "nlp", "qos": "high", "constraint": "a100|h100", "exclusive": True,
                                     "gres": "gpu:a100:2", "sbatch": {"reservation": "eval", "begin": "now+1hour"},
                                     "setup": ["module load cuda/12.4", "conda activate eval"]}}, "big")
    pools = make_pools([{**info("big", **model["resources"]), "slurm": model["slurm"]}, info("small")])
    assert [p.name for p in pools] == ["big", "small"]
    params = {"name": "fewshot", "partition": None, "qos": None, "account": None, "constraint": None, "gres": None,
              "array_parallelism": 256, "mail_type": None, "additional_parameters": {"begin": "now"}, "setup": ["source ~/venv/bin/activate"],
              "submitit_folder": "x/%j", "max_num_timeout": 3, "wait": False, "stderr_to_stdout": False, "signal_delay_s": 120}
    ex = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    ex.update_parameters(**executor_parameters(params, pools[0]))
    text = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ("#SBATCH --partition=a100", "#SBATCH --account=nlp", "#SBATCH --qos=high", "#SBATCH --constraint='a100|h100'",
                 "#SBATCH --exclusive", "#SBATCH --gres=gpu:a100:2", "#SBATCH --reservation=eval", "#SBATCH --begin=now",
                 "module load cuda/12.4", "conda activate eval", "source ~/venv/bin/activate"):
        assert line in text, (line, text)
    assert text.index("source ~/venv/bin/activate") < text.index("module load cuda/12.4")
    # a hydra.launcher value wins over the model's; a model without options gets none
    p = executor_parameters({**params, "partition": "dev"}, pools[0])
    assert p["slurm_partition"] == "dev" and p["slurm_account"] == "nlp"
    p = executor_parameters(params, pools[1])
    assert not {"slurm_account", "slurm_qos", "slurm_constraint", "slurm_exclusive", "slurm_gres"} & set(p)


def test_an_interrupted_submission_is_adopted_or_dropped(tmp_path: Path, fake_slurm, monkeypatch) -> None:
    """An intent of an older release (submitting.json): SLURM has its jobs -> pending, adopted only when the
    plan's writes are committed (a sweep that launches); SLURM never saw it -> resubmit, the intent dropped."""
    rdir = tmp_path / "r"
    rdir.mkdir()
    intent = {"job_name": "fewshot-p-abcd1234", "token": "abcd1234", "pool": "p", "folder": str(tmp_path / "sub" / "%j"),
              "single": False, "cluster": None, "started_at": "2020-01-01T00:00:00+00:00", "tasks": [{"index": 1, "trials": [0]}]}
    (rdir / "submitting.json").write_text(json.dumps(intent))
    monkeypatch.setenv("FAKE_SQUEUE", "77_[0-1]|PENDING|Priority|fewshot-p-abcd1234\\n")  # %i|%T|%r|%j
    p = pending.pending_reason(rdir, states=job_states.SlurmStates(ttl_s=0))
    assert (p.pending, p.note) == (True, "SLURM job 77_1 is PENDING (Priority)")
    assert not (rdir / "submitted.json").exists() and (rdir / "submitting.json").exists()  # read-only until committed
    for write in p.writes:
        write()
    m = json.loads((rdir / "submitted.json").read_text())
    assert m["job_id"] == "77_1" and m["adopted"] and m["stderr"].endswith("77_1_0_log.err") and not (rdir / "submitting.json").exists()
    # SLURM never saw it: the intent goes (once older than the grace period, when committed) and the job runs
    (rdir / "submitted.json").unlink()
    (rdir / "submitting.json").write_text(json.dumps(intent))
    monkeypatch.setenv("FAKE_SQUEUE", "")
    monkeypatch.setenv("FAKE_SACCT", "")
    p = pending.pending_reason(rdir, states=job_states.SlurmStates(ttl_s=0))
    assert not p.pending and "never reached SLURM" in p.note and (rdir / "submitting.json").exists()
    for write in p.writes:
        write()
    assert not (rdir / "submitting.json").exists()


def test_classes_pickled_into_queued_jobs_keep_their_paths() -> None:
    """submitit pickles the payload by reference: jobs queued before an upgrade unpickle these names on the node."""
    import pickle

    from fewshot_eval.launch.slurm.node_jobs import CombinedJobs, PoolCall
    from hydra_plugins.fewshot_eval_plugins.slurm_launcher import SlurmPoolLauncher

    assert pickle.loads(b"cfewshot_eval.launch.slurm\nPoolCall\n.") is PoolCall  # 0.2.0's module path
    assert pickle.loads(b"cfewshot_eval.launch.slurm\nCombinedJobs\n.") is CombinedJobs
    assert pickle.loads(b"chydra_plugins.fewshot_eval_plugins.slurm_launcher\nSlurmPoolLauncher\n.") is SlurmPoolLauncher

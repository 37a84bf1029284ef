"""Watching and stopping a sweep: progress lines, one line per finished local_parallel job,
Ctrl-C / SIGTERM (exit status, one line, no orphaned job processes), unique sweep dirs."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import default_stop_signals, run_cli
from fewshot_eval import progress
from fewshot_eval.outcome import Outcome


@pytest.fixture
def broken_conf(tmp_path: Path) -> list[str]:
    """A task setting 'copa_broken' whose jobs fail at run time, not at planning: its template reads an
    attribute the data's strings do not have (planning checks fields, not Jinja expressions)."""
    from fewshot_eval.config import conf_dir

    conf = tmp_path / "brokenconf"
    (conf / "task_def").mkdir(parents=True)
    (conf / "task").mkdir()
    src = conf_dir() / "task_def" / "copa_demo.yaml"
    text = src.read_text().replace("data/copa_demo/", f"{src.parent}/data/copa_demo/").replace("{{ premise[:-1] }}", "{{ premise.nope }}")
    assert "premise.nope" in text
    (conf / "task_def" / "copa_broken.yaml").write_text(text)
    (conf / "task" / "copa_broken.yaml").write_text("run_name: demo\ntasks: [copa_broken]\n")
    return ["--config-dir", str(conf)]


def lines_with(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


# ------------------------------------------------------------------------------- the progress class
def test_plain_progress_lines_count_failures_and_give_an_eta() -> None:
    out = io.StringIO()
    p = progress.SweepProgress(3, stream=io.StringIO(), out=out)
    assert p.bar is None  # not a TTY: plain lines
    for outcome in (Outcome.RAN, Outcome.FAILED, Outcome.ELSEWHERE):
        p.finished(outcome)
    got = out.getvalue().splitlines()
    assert got[0].startswith("fewshot-eval: [1/3] done, 0 failed, ETA ")
    assert got[1].startswith("fewshot-eval: [2/3] done, 1 failed, ETA ")
    assert got[2].startswith("fewshot-eval: [3/3] done, 1 failed, 1 running elsewhere, took ")
    assert [progress.fmt_duration(s) for s in (4.4, 190, 7500)] == ["4s", "3m10s", "2h05m"]


def test_plain_progress_of_a_huge_sweep_is_throttled() -> None:
    out = io.StringIO()
    p = progress.SweepProgress(500, stream=io.StringIO(), out=out)
    for _ in range(10):
        p.finished(Outcome.RAN)
    p.finished(Outcome.FAILED)  # a failure is always shown
    p.finished(Outcome.RAN, "majority x copa_demo nshot=0: ran in 0.1s")  # so is a job's own line
    got = out.getvalue().splitlines()
    assert [g.split(" ", 2)[1] for g in got] == ["[1/500]", "[11/500]", "[12/500]"]
    assert got[2].startswith("fewshot-eval: [12/500] majority x copa_demo nshot=0: ran in 0.1s | 1 failed, ETA ")


def test_a_tty_gets_a_bar_and_the_job_lines_above_it() -> None:
    tty, out = FakeTTY(), io.StringIO()
    with progress.SweepProgress(3, stream=tty, out=out) as p:
        assert p.bar is not None
        p.finished(Outcome.RAN, "random x copa_demo nshot=0: ran in 1.0s")
        p.finished(Outcome.FAILED)
    assert "2/3" in tty.getvalue() and "1 failed" in tty.getvalue()
    assert out.getvalue() == "fewshot-eval: random x copa_demo nshot=0: ran in 1.0s\n"


def test_interrupted_says_one_line_and_its_exit_status() -> None:
    e = progress.Interrupted.of(KeyboardInterrupt(), "1 of 4 jobs finished")
    assert e.exit_status == 130
    assert e.message() == ("fewshot-eval: interrupted (1 of 4 jobs finished); finished results are kept, "
                           "re-run the same command to continue.")
    term = progress.Interrupted.of(progress.Interrupted(signal.SIGTERM), "stopped 2 running jobs")
    assert term.exit_status == 143 and term.message().startswith("fewshot-eval: stopped by SIGTERM (stopped 2 running jobs);")


# ------------------------------------------------------------------------------- progress in real sweeps
def test_sequential_sweep_prints_done_total_failures_and_eta(workdir: Path, broken_conf: list[str]) -> None:
    proc = run_cli(["-m", *broken_conf, "model=random,majority", "task=copa_demo,copa_broken", "nshot=2"], workdir, check=False)
    assert proc.returncode == 1
    got = lines_with(proc.stdout, "fewshot-eval: [")
    assert [g.split(", ETA ")[0].split(", took ")[0] for g in got] == [
        "fewshot-eval: [1/4] done, 0 failed",
        "fewshot-eval: [2/4] done, 1 failed",
        "fewshot-eval: [3/4] done, 1 failed",
        "fewshot-eval: [4/4] done, 2 failed",
    ]
    assert ", ETA " in got[0] and ", took " in got[3]


def test_local_parallel_prints_one_line_per_finished_job(workdir: Path, broken_conf: list[str]) -> None:
    """ran, running elsewhere (a trial this test holds) and failed (with the error line and the log)."""
    from fewshot_eval.store.locks import claim_trials

    args = ["-m", *broken_conf, "model=random", "task=copa_demo,copa_broken", "nshot=2", "num_trials=2", "split_trials=true",
            "hydra/launcher=local_parallel"]
    plan = run_cli(args + ["dry_run=true"], workdir).stdout
    [row] = {ln.split()[5] for ln in plan.splitlines() if ln.startswith("run ") and ln.split()[2] == "copa_demo"}
    with claim_trials(workdir / "results" / row, [0]) as held:
        assert held == [0]
        proc = run_cli(args, workdir, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    got = lines_with(proc.stdout, "fewshot-eval: [")
    assert sorted(g.split("]")[0] for g in got) == ["fewshot-eval: [1/4", "fewshot-eval: [2/4", "fewshot-eval: [3/4", "fewshot-eval: [4/4"]
    by_job = {g.split("] ", 1)[1].split(":")[0]: g for g in got}
    assert set(by_job) == {f"random x {task} nshot=2 trial={t}" for task in ("copa_demo", "copa_broken") for t in (0, 1)}
    assert ": running elsewhere in " in by_job["random x copa_demo nshot=2 trial=0"]
    assert ": ran in " in by_job["random x copa_demo nshot=2 trial=1"]
    for t in (0, 1):
        failed = by_job[f"random x copa_broken nshot=2 trial={t}"]
        assert ": FAILED in " in failed and re.search(r": exit \d: .*has no attribute 'nope'", failed), failed
        log = Path(failed.split("(log: ")[1].split(")")[0])
        assert log.name == "job.log" and "nope" in log.read_text()
    assert got[-1].endswith(tuple(f"| 2 failed, 1 running elsewhere, took {s}s" for s in range(100)))
    assert "ran 1, running elsewhere 1, skipped 0, failed 2." in proc.stdout


def test_two_sweeps_started_together_get_their_own_sweep_dirs(workdir: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-m", "fewshot_eval", "-m", f"model={m}", "task=copa_demo", "nshot=0",
                          "hydra/launcher=local_parallel"], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for m in ("random", "majority")
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    sweeps = sorted((workdir / "results" / ".hydra_sweeps").iterdir())
    assert len(sweeps) == 2
    # sweeps started in the same second differ by their microseconds
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}", d.name) for d in sweeps), sweeps
    models = []
    for d in sweeps:
        [launch] = [json.loads(line) for line in (d / "launches.jsonl").read_text().splitlines()]
        models.append(launch["overrides"][0])
        assert launch["exit"] == 0 and (d / "0" / "job.log").exists()
    assert sorted(models) == ["model=majority", "model=random"]


# ------------------------------------------------------------------------------- stopping a sweep
def start_sweep(workdir: Path, args: list[str]) -> subprocess.Popen:
    """The sweep in its own session, as a shell would start it (a signal to it reaches nothing else)."""
    return subprocess.Popen([sys.executable, "-m", "fewshot_eval", "-m", *args], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=default_stop_signals)


def wait_for(cond, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc/<pid>/stat)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_ctrl_c_during_a_sweep_exits_130_with_one_line(workdir: Path) -> None:
    proc = start_sweep(workdir, ["model=tiny_gpt2", "task=copa_demo,nli_demo", "nshot=0,2"])
    wait_for(lambda: any((workdir / "results").rglob("metrics.json")) or proc.poll() is not None)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fewshot-eval: interrupted (") and lines[0].endswith("re-run the same command to continue.")
    # and while it ran, the job said how far it was, with examples/s
    assert "trial 0 (1/1) copa_demo.default: 30 examples in " in out and " ex/s)" in out


@pytest.mark.slow
@pytest.mark.parametrize("sig,status,word,evaluating", [
    (signal.SIGTERM, 143, "stopped by SIGTERM", True),  # the jobs are evaluating
    (signal.SIGINT, 130, "interrupted", False),  # the job processes have just started (cheaper)
])
def test_stopping_a_local_parallel_sweep_stops_its_job_processes(workdir: Path, sig: int, status: int, word: str, evaluating: bool) -> None:
    proc = start_sweep(workdir, ["model=tiny_gpt2", "task=copa_demo,nli_demo", "nshot=2", "num_trials=10", "model.max_parallel=2",
                                 "hydra/launcher=local_parallel", "hydra.launcher.max_workers=2"])
    sweeps = workdir / "results" / ".hydra_sweeps"

    def both_running() -> bool:  # two job processes (that have loaded their model)
        logs = list(sweeps.glob("*/*/job.log"))
        ready = len(logs) == 2 and len(children(proc.pid)) == 2 and (not evaluating or all("loaded model" in f.read_text() for f in logs))
        return ready or proc.poll() is not None

    wait_for(both_running)
    kids = children(proc.pid)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err[-3000:]
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"fewshot-eval: {word} (stopped 2 running jobs, 0 of 2 jobs finished)")
    t0 = time.monotonic()
    while [k for k in kids if Path(f"/proc/{k}").exists()] and time.monotonic() - t0 < 5:
        time.sleep(0.1)
    assert [k for k in kids if Path(f"/proc/{k}").exists()] == [], "job processes outlived the sweep"
    rows = [json.loads(line) for line in next(sweeps.glob("*/launches.jsonl")).read_text().splitlines()]
    assert sorted(r["job"] for r in rows) == [0, 1] and all(r["stopped"] for r in rows)


@pytest.mark.parametrize("after_s", [0.25, 0.6])
def test_ctrl_c_while_the_app_starts_exits_130_with_one_line(workdir: Path, after_s: float) -> None:
    """Ctrl-C in the first second, while Hydra and the app import, used to print a KeyboardInterrupt traceback."""
    proc = start_sweep(workdir, ["model=random", "task=copa_demo", "nshot=0", "dry_run=true"])
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err[-3000:]
    if "Nothing launched" in out:  # on a quiet machine the dry run can be over before the signal: it ended, silently
        assert proc.returncode in (0, 130, -signal.SIGINT) and err in ("", INTERRUPTED), (proc.returncode, err[-3000:])
        return
    assert proc.returncode == 130 and "Dry run" not in out, (proc.returncode, out[-500:], err[-3000:])
    assert err == INTERRUPTED, err[-3000:]


INTERRUPTED = "fewshot-eval: interrupted; finished results are kept, re-run the same command to continue.\n"


def test_an_ignored_ctrl_c_stays_ignored_and_a_default_one_stops(workdir: Path) -> None:
    """Started with SIGINT ignored (``nohup ... &``) the app keeps it ignored; the tests above set the default
    disposition in their child, so they hold wherever the suite runs."""
    code = ("import signal, sys; from fewshot_eval.cli import _exit_on_stop_signal; _exit_on_stop_signal(); "
            "sys.stdout.write(str(signal.getsignal(signal.SIGINT) is signal.SIG_IGN))")
    ignored = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert ignored.stdout == "True", ignored.stderr
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=default_stop_signals)
    assert default.stdout == "False", default.stderr


def test_a_configuration_error_exits_2_with_one_line(workdir: Path) -> None:
    proc = run_cli(["-m", "model=random,gpt5", "dry_run=true"], workdir, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] \
        and proc.stderr.startswith("fewshot-eval: error: Unknown model 'gpt5' (did you mean 'gpt2'?).")

"""Hydra callbacks always fire in the sweep's process: a failing job, a refused plan and Ctrl-C still
end with ``on_multirun_end`` (after the sweep's own summary), and the exit status comes after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import broken_model_conf, default_stop_signals, run_cli

RECORDER = '''
import json, os
from hydra.experimental.callback import Callback

class Recorder(Callback):
    def _log(self, event, **extra):
        with open(os.environ["CALLBACK_LOG"], "a") as f:
            f.write(json.dumps({"event": event, "pid": os.getpid(), **extra}) + "\\n")

    def on_multirun_start(self, config, **kwargs):
        self._log("on_multirun_start")

    def on_multirun_end(self, config, **kwargs):
        self._log("on_multirun_end")

    def on_run_start(self, config, **kwargs):
        self._log("on_run_start")

    def on_job_start(self, config, **kwargs):
        self._log("on_job_start", num=config.hydra.job.num)

    def on_job_end(self, config, job_return, **kwargs):
        self._log("on_job_end", num=config.hydra.job.num, status=job_return.status.name)
'''


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[list[str], dict[str, str], Path]:
    """(the override that adds the callback, the env that finds it, the file it writes)."""
    mod = tmp_path / "cbmod"
    mod.mkdir()
    (mod / "fewshot_test_recorder.py").write_text(RECORDER)
    log = tmp_path / "callbacks.jsonl"
    env = {"PYTHONPATH": os.pathsep.join([str(mod), os.environ.get("PYTHONPATH", "")]), "CALLBACK_LOG": str(log)}
    return ["+hydra.callbacks.rec._target_=fewshot_test_recorder.Recorder"], env, log


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("launcher", ["local", "local_parallel"])
def test_a_failing_job_still_ends_the_multirun(workdir: Path, tmp_path: Path, recorder, launcher: str) -> None:
    cb, env, log = recorder
    conf = broken_model_conf(tmp_path)
    proc = run_cli(["-m", "--config-dir", str(conf), "model=broken,random", "task=copa_demo", "nshot=0",
                    f"hydra/launcher={launcher}", *cb], workdir, check=False, env=env)
    assert proc.returncode == 1 and "failed 1" in proc.stdout, proc.stderr[-2000:]
    got = events(log)
    assert [e["event"] for e in got][0] == "on_multirun_start" and got[-1]["event"] == "on_multirun_end"
    ends = {e["num"]: e["status"] for e in got if e["event"] == "on_job_end"}
    assert sorted(ends.values()) == ["COMPLETED", "FAILED"] and sorted(ends) == [0, 1]
    assert [e for e in got if e["event"] == "on_job_start"] and not [e for e in got if e["event"] == "on_run_start"]
    assert {e["pid"] for e in got} == {got[0]["pid"]}, "callbacks ran outside the sweep's process"


@pytest.mark.parametrize("refusal", [["+unknown_key=1"], ["model=tiny_gpt2", "model.weights=/nonexistent/weights"]],
                         ids=["config error", "jobs that would fail at their start"])
def test_a_refused_plan_still_ends_the_multirun(workdir: Path, recorder, refusal: list[str]) -> None:
    cb, env, log = recorder
    proc = run_cli(["-m", "task=copa_demo", "nshot=0", *refusal, *cb], workdir, check=False, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert [e["event"] for e in events(log)] == ["on_multirun_start", "on_multirun_end"]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["local", "local_parallel"])
def test_ctrl_c_still_ends_the_multirun(workdir: Path, recorder, launcher: str) -> None:
    cb, env, log = recorder
    proc = subprocess.Popen([sys.executable, "-m", "fewshot_eval", "-m", "model=tiny_gpt2", "task=copa_demo", "nshot=2",
                             "num_trials=20", f"hydra/launcher={launcher}", *cb], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, **env},
                            preexec_fn=default_stop_signals)  # a terminal's Ctrl-C, whatever this process inherited
    t0 = time.monotonic()
    while not any(e["event"] == "on_job_start" for e in events(log)) and proc.poll() is None:
        assert time.monotonic() - t0 < 120, "the job never started"
        time.sleep(0.1)
    time.sleep(1.0)  # into the job
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("fewshot-eval: interrupted") and "Traceback" not in err
    assert events(log)[-1]["event"] == "on_multirun_end"

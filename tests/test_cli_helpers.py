"""``run_cli``'s fork server (tests/cli_zygote.py): a forked run behaves as ``python -m fewshot_eval`` in a
new process would -- its cwd, its environment, its output, its exit status, death by a signal, a timeout."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest

import cli_helpers
from cli_helpers import run_cli

SWEEP = ["-m", "model=random", "task=copa_demo", "nshot=0", "n_eval_samples=2"]


def test_a_forked_run_has_its_own_cwd_env_output_and_exit_status(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    runs = {}
    threads = [threading.Thread(target=lambda d=d: runs.__setitem__(d, run_cli(SWEEP, d))) for d in (a, b)]  # side by side
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cli_helpers._ZYGOTE and cli_helpers._ZYGOTE[0] is not None  # they were forked, not plain subprocesses
    for d in (a, b):
        assert "ran 1, skipped 0, failed 0" in runs[d].stdout and runs[d].returncode == 0
        assert len(list((d / "results").rglob("results.json"))) == 1  # relative output_dir: the run's own cwd
    bad = run_cli(["-m", "model=random", "task=no_such_task"], a, check=False)
    assert bad.returncode == 2 and "no_such_task" in bad.stderr
    killed = run_cli([*(o for o in SWEEP if o != "nshot=0"), "nshot=2", "num_trials=2"], a, check=False, env={"FEWSHOT_FAULT": "kill-after-trial:1"})  # its env
    assert killed.returncode == -signal.SIGKILL


def test_a_forked_run_past_its_timeout_is_killed(tmp_path: Path) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        run_cli(["-m", "model=tiny_gpt2", "task=copa_demo", "nshot=2"], tmp_path, timeout=0.5)


def test_an_environment_the_preloaded_modules_read_gets_a_plain_subprocess() -> None:
    zygote = cli_helpers._ZYGOTE[0] if cli_helpers._ZYGOTE else None
    if zygote is None:
        pytest.skip("no fork server in this session")
    assert zygote.fits({**zygote.env, "FEWSHOT_FAULT": "x", "SLURM_CONF": "/x"})
    assert not zygote.fits({**zygote.env, "HF_HOME": "/elsewhere"})
    assert not zygote.fits({k: v for k, v in zygote.env.items() if k != "HF_HUB_OFFLINE"})

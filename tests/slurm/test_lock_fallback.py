"""The lock-file fallback of ``fewshot_eval.store.locks`` (for filesystems without ``flock``): forced with
``FEWSHOT_LOCKS=files``, picked by itself when ``flock`` answers ENOLCK. No cluster needed.
The concurrency tests of the project run with it too: ``FEWSHOT_LOCKS=files pytest tests/test_kill_faults.py
tests/test_skipping.py tests/test_progress_and_signals.py``."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fewshot_eval.store import locks
from fewshot_eval.store.locks import ResultBusy, claim_trials, locked, move_aside, writing


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(locks.LOCKS_ENV, "files")


def test_exclusive_and_shared_exclude_each_other(tmp_path: Path, forced) -> None:
    p = tmp_path / "r" / ".lock"
    with locked(p) as a:
        assert a and (tmp_path / "r" / ".lock.x").exists()
        with locked(p) as b, locked(p, shared=True) as c:
            assert not b and not c
        assert json.loads((tmp_path / "r" / ".lock.x").read_text())["pid"] == os.getpid()
    assert not list((tmp_path / "r").glob(".lock.*"))
    with locked(p, shared=True) as a, locked(p, shared=True) as b:
        assert a and b  # shared holders share
        with locked(p) as c:
            assert not c
    with locked(p) as a:
        assert a


def test_result_lock_and_trial_claims(tmp_path: Path, forced) -> None:
    rdir = tmp_path / "res"
    rdir.mkdir()
    (rdir / "results.json").write_text("{}")
    with writing(rdir):
        with pytest.raises(ResultBusy):
            move_aside(rdir)
    with claim_trials(rdir, [0, 1]) as held, claim_trials(rdir, [1, 2]) as other:
        assert held == [0, 1] and other == [2]
    assert move_aside(rdir) is not None


def holder(path: Path, shared: bool = False) -> subprocess.Popen:
    code = ("import sys, time; from pathlib import Path; from fewshot_eval.store.locks import locked\n"
            f"with locked(Path({str(path)!r}), shared={shared}) as ok:\n    print(ok, flush=True); time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "True"
    return proc


def test_sigkilled_holder_is_stale_at_once_on_this_host(tmp_path: Path, forced) -> None:
    p = tmp_path / ".lock"
    proc = holder(p)
    with locked(p) as ok:
        assert not ok
    proc.kill()
    proc.wait()
    assert (tmp_path / ".lock.x").exists()  # left behind by the kill ...
    with locked(p) as ok:
        assert ok  # ... and taken over: its owner is a dead process of this host


def test_other_hosts_lock_is_stale_after_its_heartbeat_stops(tmp_path: Path, forced) -> None:
    x = tmp_path / ".lock.x"
    x.write_text(json.dumps({"host": "elsewhere", "pid": 1, "start": "1"}))
    with locked(tmp_path / ".lock") as ok:
        assert not ok  # fresh heartbeat: alive
    old = time.time() - locks.STALE_S - 5
    os.utime(x, (old, old))
    with locked(tmp_path / ".lock") as ok:
        assert ok


def test_heartbeat_refreshes_held_lock_files(tmp_path: Path, forced, monkeypatch) -> None:
    monkeypatch.setattr(locks, "HEARTBEAT_S", 0.2)
    locks._heartbeat.thread = None  # restart with the short period
    with locked(tmp_path / ".lock"):
        x = tmp_path / ".lock.x"
        old = time.time() - 1000
        os.utime(x, (old, old))
        deadline = time.monotonic() + 5
        while x.stat().st_mtime < time.time() - 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert x.stat().st_mtime > time.time() - 100


def test_flock_that_fails_falls_back_to_lock_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(locks.LOCKS_ENV, raising=False)

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", no_flock)
    with locked(tmp_path / ".lock") as ok:
        assert ok and (tmp_path / ".lock.x").exists()
        with locked(tmp_path / ".lock") as again:
            assert not again
    assert not (tmp_path / ".lock.x").exists()

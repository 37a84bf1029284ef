"""Result directories shared by colleagues: files and dirs follow the umask, so a second Unix user
can read (umask 022) or also write (umask 002) a sweep's results, and sees them as complete."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

import fewshot_eval
from cli_helpers import run_cli

SWEEP = ["-m", "model=random,majority", "task=copa_demo", "nshot=0,2"]
TREE = Path(fewshot_eval.__file__).resolve().parent.parent  # the fewshot_eval under test (and hydra_plugins/)


def _with_umask(mask: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    old = os.umask(mask)  # the CLI subprocess inherits it
    try:
        return run_cli(args, cwd)
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[Path, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[p] = os.lstat(p).st_mode
    return out


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path is under a 0700 dir)."""
    d = Path(tempfile.mkdtemp(prefix="fse-shared-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def other_user() -> Iterator[str]:
    """A second Unix user, created for the test (needs root, useradd and runuser)."""
    if os.geteuid() != 0 or not (shutil.which("useradd") and shutil.which("userdel") and shutil.which("runuser")):
        pytest.skip("needs root with useradd/userdel/runuser to create a second user")
    name = f"fse{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture
def traversable() -> Iterator[None]:
    """Let other users traverse (o+x, not read) the directories above this checkout and its packages
    for the test (a CI clone may sit in a 0700 temp dir); the modes are restored afterwards."""
    changed: list[tuple[Path, int]] = []
    for top in {TREE, Path(sysconfig.get_paths()["purelib"])}:
        for d in [top, *top.parents]:
            if d == Path("/"):
                continue
            mode = d.stat().st_mode
            if not mode & stat.S_IXOTH:
                changed.append((d, mode))
                d.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    try:
        yield
    finally:
        for d, mode in reversed(changed):
            d.chmod(stat.S_IMODE(mode))


def _python_for(user: str) -> tuple[str, str]:
    """An interpreter ``user`` can run with this environment's packages: this one, or (when it lives
    in a directory the user cannot enter, e.g. /root/.pyenv) a system Python of the same version."""
    site = sysconfig.get_paths()["purelib"]
    path = os.pathsep.join([str(TREE), site])
    candidates = [sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"]
    for exe in candidates:
        probe = subprocess.run(
            ["runuser", "-u", user, "--", "env", f"PYTHONPATH={path}", exe, "-c", "import fewshot_eval, hydra"],
            capture_output=True, text=True,
        )
        if probe.returncode == 0:
            return exe, path
    pytest.skip(f"no Python that user {user} can run with this environment's packages")


def _run_as(user: str, args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    exe, path = _python_for(user)
    env = [f"PYTHONPATH={path}", f"HOME={home}", "HF_HUB_OFFLINE=1", "HF_DATASETS_OFFLINE=1", "TRANSFORMERS_OFFLINE=1"]
    return subprocess.run(["runuser", "-u", user, "--", "env", *env, exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_another_user_sees_a_umask_022_sweep_as_complete_and_can_read_it(shared_dir: Path, other_user: str, traversable: None) -> None:
    out = shared_dir / "results"
    out.mkdir()
    out.chmod(0o755)  # user A's tree: the other user may read it, not write it
    _with_umask(0o022, SWEEP + [f"output_dir={out}"], shared_dir)
    for p, mode in _modes(out).items():
        if stat.S_ISDIR(mode) and p != out:
            assert stat.S_IMODE(mode) == 0o755, f"{p}: {oct(mode)}"
        elif stat.S_ISREG(mode):
            assert stat.S_IMODE(mode) == 0o644, f"{p}: {oct(mode)}"
    home = shared_dir / "home"
    home.mkdir()
    shutil.chown(home, user=other_user)
    plan = _run_as(other_user, ["-m", "fewshot_eval", *SWEEP, f"output_dir={out}", "dry_run=true"], shared_dir, home)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "(4 skip: complete)" in plan.stdout and "is not writable by you (nothing would run)" in plan.stdout, plan.stdout[-3000:]
    read = subprocess.run(["runuser", "-u", other_user, "--", "find", str(out), "-type", "f", "-exec", "cat", "{}", "+"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert read.returncode == 0, read.stderr[-3000:]


def test_umask_002_makes_every_file_and_dir_group_writable(workdir: Path) -> None:
    _with_umask(0o002, SWEEP, workdir)
    modes = _modes(workdir / "results")
    assert any(p.name == "results.json" for p in modes) and any(p.name == "scheduled_jobs.jsonl" for p in modes)
    for p, mode in modes.items():
        if stat.S_ISDIR(mode):
            assert stat.S_IMODE(mode) == 0o775, f"{p}: {oct(mode)}"
        elif stat.S_ISREG(mode):
            assert stat.S_IMODE(mode) == 0o664, f"{p}: {oct(mode)}"

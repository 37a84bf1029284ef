"""A second Unix user for the tests that check what another user (or a non-root user) sees.

CI runs as root, where permission checks never fail; these fixtures create a user for the test
(``useradd``, removed afterwards) and run commands as that user (``runuser``). Without root (or
without useradd/runuser) the tests that need them skip -- unless ``FEWSHOT_REQUIRE_SECOND_USER=1``
(CI), which makes that a failure.
"""

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
from typing import Iterator, NoReturn

import pytest

import fewshot_eval

REQUIRE_ENV = "FEWSHOT_REQUIRE_SECOND_USER"
TREE = Path(fewshot_eval.__file__).resolve().parent.parent  # the fewshot_eval under test (and hydra_plugins/)


def skip_or_fail(why: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{why} ({REQUIRE_ENV}=1)")
    pytest.skip(f"{why} (set {REQUIRE_ENV}=1 to make this a failure)")


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
        skip_or_fail("needs root with useradd/userdel/runuser to create a second user")
    name = f"fse{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name], capture_output=True, text=True)
    if made.returncode != 0:
        skip_or_fail(f"useradd failed: {made.stderr.strip()}")
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


def python_for(user: str) -> tuple[str, str]:
    """(an interpreter ``user`` can run with this environment's packages, its PYTHONPATH): this one, or
    (when it lives in a directory the user cannot enter, e.g. /root/.pyenv) a system Python of the same version."""
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
    skip_or_fail(f"no Python that user {user} can run with this environment's packages")


def run_as(user: str, args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """``python ARGS`` as ``user`` (HOME=``home``, offline), with this environment's packages."""
    exe, path = python_for(user)
    env = [f"PYTHONPATH={path}", f"HOME={home}", "HF_HUB_OFFLINE=1", "HF_DATASETS_OFFLINE=1", "TRANSFORMERS_OFFLINE=1"]
    return subprocess.run(["runuser", "-u", user, "--", "env", *env, exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def home_of(user: str, shared: Path) -> Path:
    """A home directory for ``user`` inside ``shared``."""
    home = shared / "home"
    home.mkdir()
    shutil.chown(home, user=user)
    return home

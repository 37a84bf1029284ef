"""Reproducibility info recorded with every result."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fewshot_eval

_GIT: dict[str, tuple[float, str | None]] = {}
GIT_TTL_S = 60.0  # a sweep's jobs in one process ask once a minute, not twice per job (two git processes each)


def git_commit(cwd: Path) -> str | None:
    """HEAD of the repository containing ``cwd`` (with ``-dirty`` when it has changes), or None; asked
    at most once a minute per directory in a process."""
    import time

    key = os.fspath(cwd)
    hit = _GIT.get(key)
    if hit is None or time.monotonic() - hit[0] > GIT_TTL_S:
        hit = _GIT[key] = (time.monotonic(), _ask_git(cwd))
    return hit[1]


def _ask_git(cwd: Path) -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=cwd, capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def repro_info(cwd: Path, overrides: list[str]) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = os.environ.get("USER", "?")
    return {
        "version": fewshot_eval.__version__,
        "git_commit": git_commit(cwd),
        "overrides": overrides,
        "user": user,
        "host": socket.gethostname(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }

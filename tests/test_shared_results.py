"""Result directories shared by colleagues: files and dirs follow the umask, so a second Unix user
can read (umask 022) or also write (umask 002) a sweep's results, and sees them as complete."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from cli_helpers import run_cli
from second_user import home_of, run_as

SWEEP = ["-m", "model=random,majority", "task=copa_demo", "nshot=0,2"]


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
    home = home_of(other_user, shared_dir)
    plan = run_as(other_user, ["-m", "fewshot_eval", *SWEEP, f"output_dir={out}", "dry_run=true"], shared_dir, home)
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

"""Check that the output dir can be created and written, with an error that says what to do."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fewshot_eval.config import ConfigError

# a filesystem with less free space than this for the user is full: nothing a job writes would fit
MIN_FREE_BYTES = 1 << 20


def check_writable(root: Path, probe: bool = True) -> None:
    """Raise ConfigError when ``root`` cannot be created or written, or its filesystem is full.
    ``probe=False`` (a dry run) only asks the permissions and free space of ``root`` or its nearest
    existing parent: nothing is created."""
    if not probe:
        existing = root
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
            raise ConfigError(f"output_dir '{root}' cannot be created or written (no write permission on {existing}). "
                              f"Pass output_dir=<a directory you can write>.")
        _check_space(root, existing)
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-") as f:
            f.write(b"x")  # a full disk still creates empty files: only a byte written tells
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ConfigError(
            f"output_dir '{root}' cannot be created or written ({e.strerror or e}). "
            f"Free space there or pass output_dir=<a directory you can write>."
        ) from None
    _check_space(root, root)


def _check_space(root: Path, existing: Path) -> None:
    try:
        st = os.statvfs(existing)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        raise ConfigError(f"output_dir '{root}' is on a full filesystem ({free} bytes free). "
                          f"Free space there or pass output_dir=<a directory with space>.")

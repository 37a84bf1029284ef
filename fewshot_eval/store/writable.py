"""Check that the output dir can be created and written, with an error that says what to do."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fewshot_eval.config import ConfigError


def check_writable(root: Path, probe: bool = True) -> None:
    """Raise ConfigError when ``root`` cannot be created or written. ``probe=False`` (a dry run) only asks
    the permissions of ``root`` or its nearest existing parent: nothing is created."""
    if not probe:
        import os

        existing = root
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
            return
        raise ConfigError(f"output_dir '{root}' cannot be created or written (no write permission on {existing}). "
                          f"Pass output_dir=<a directory you can write>.")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(
            f"output_dir '{root}' cannot be created or written ({e.strerror or e}). "
            f"Pass output_dir=<a directory you can write>."
        ) from None

"""Check that the output dir can be created and written, with an error that says what to do."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fewshot_eval.config import ConfigError


def check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(
            f"output_dir '{root}' cannot be created or written ({e.strerror or e}). "
            f"Pass output_dir=<a directory you can write>."
        ) from None

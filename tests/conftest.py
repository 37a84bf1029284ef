"""Fixtures shared by the tests (helpers that tests import live in cli_helpers.py)."""

from __future__ import annotations

import os

from cli_helpers import user_conf, workdir  # noqa: F401  (fixtures)
from second_user import other_user, shared_dir, traversable  # noqa: F401  (fixtures)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

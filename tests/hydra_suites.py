"""Shared by the runs of Hydra's own launcher conformance suites (tests/test_hydra_conformance.py,
tests/slurm/test_slurm_conformance.py): import the fixture into the test module to use it."""

from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def hydra_default_version_base() -> Iterator[None]:
    """The suites are written for Hydra's default version base (1.1: a job chdirs into its output dir);
    an earlier test of this process may have set another one (Hydra's VersionBase is a process-wide singleton)."""
    from hydra.core.singleton import Singleton
    from hydra.version import VersionBase

    saved = Singleton._instances.pop(VersionBase, None)
    yield
    if saved is not None:
        Singleton._instances[VersionBase] = saved

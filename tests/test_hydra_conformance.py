"""Hydra's own conformance suites for launcher plugins, run against fewshot-eval's local launchers the
way Hydra's plugins run them (plugins/hydra_joblib_launcher/tests/test_joblib_launcher.py).

The apps here are Hydra's test apps (``hydra.test_utils``): they know nothing of fewshot-eval. Every
test of ``LauncherTestSuite``, ``IntegrationTestSuite`` and ``BatchedSweeperTestSuite`` applies to
``local`` and ``local_parallel`` and runs. Not run here, by design:

* the suites against ``hydra/sweeper=fewshot``: the suites' apps have no ``model``/``task`` config
  groups, and the fewshot sweeper plans fewshot-eval's model x task grid only (another app gets one
  line saying so: tests/test_hydra_citizen.py). Its contracts are checked by project tests:
  ``multirun.yaml`` and per-job ``.hydra/`` and logs (tests/test_hydra_citizen.py), callbacks
  (tests/test_callbacks.py), job numbers and the sweep dir (tests/test_local_launchers.py);
* the SLURM launcher: tests/slurm/test_slurm_conformance.py, on the test cluster.
"""

from __future__ import annotations

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, IntegrationTestSuite, LauncherTestSuite

from hydra_plugins.fewshot_eval_plugins.local_launcher import LocalLauncher
from hydra_plugins.fewshot_eval_plugins.local_parallel_launcher import LocalParallelLauncher
from hydra_suites import hydra_default_version_base  # noqa: F401  (autouse: Hydra's default version base)

LAUNCHERS = [("local", []), ("local_parallel", ["hydra.launcher.max_workers=2"])]


def test_discovery() -> None:
    names = [x.__name__ for x in Plugins.instance().discover(Launcher)]
    assert LocalLauncher.__name__ in names and LocalParallelLauncher.__name__ in names


@pytest.mark.parametrize("launcher_name, overrides", LAUNCHERS)
class TestLocalLaunchers(LauncherTestSuite):
    """hydra/launcher/<name> comes from the ConfigStore entries of hydra_plugins/fewshot_eval_plugins."""


@pytest.mark.parametrize("launcher_name, overrides", [(name, ["hydra.sweeper.max_batch_size=2", *ovr]) for name, ovr in LAUNCHERS])
class TestLocalLaunchersInBatches(BatchedSweeperTestSuite):
    """Hydra's basic sweeper in batches of 2: the launchers number jobs from ``initial_job_idx``."""


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        pytest.param({"defaults": [{"override hydra/launcher": name}, {"override hydra/hydra_logging": "hydra_debug"},
                                  {"override hydra/job_logging": "disabled"}]},
                     ["-m"], id=name)
        for name in ("local", "local_parallel")
    ],
)
class TestLocalLaunchersIntegration(IntegrationTestSuite):
    """A generated app run as a script, ``python task.py -m ...``."""

"""Hydra's conformance suites against fewshot-eval's SLURM launcher on the test cluster, and a second
Hydra app in the same environment that still launches with hydra-submitit-launcher's ``submitit_slurm``.

In fewshot-eval's app ``hydra/launcher=submitit_slurm`` is the pool launcher, fed by the fewshot
sweeper's plan (tests/slurm/test_slurm_launcher.py). The suites' apps are Hydra's test apps: for them
``submitit_slurm`` is hydra-submitit-launcher's own, so they select the pool launcher by its
ConfigStore name ``fewshot_slurm``; with Hydra's basic sweeper it launches as hydra-submitit-launcher
does (``SlurmPoolLauncher.launch``). Every test of the three suites applies and runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, IntegrationTestSuite, LauncherTestSuite

from hydra_suites import hydra_default_version_base  # noqa: F401  (autouse: Hydra's default version base)

pytestmark = pytest.mark.slurm

SLURM = ["hydra.launcher.partition=debug", "hydra.launcher.timeout_min=5"]


@pytest.fixture(autouse=True)
def cluster(slurm_cluster):  # noqa: ANN001, ANN201 - SLURM_CONF for this process and the apps it starts
    return slurm_cluster


@pytest.mark.parametrize("launcher_name, overrides", [("fewshot_slurm", SLURM)])
class TestSlurmPoolLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize("launcher_name, overrides", [("fewshot_slurm", ["hydra.sweeper.max_batch_size=2", *SLURM])])
class TestSlurmPoolLauncherInBatches(BatchedSweeperTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({"defaults": [{"override hydra/launcher": "fewshot_slurm"}, {"override hydra/hydra_logging": "hydra_debug"},
                    {"override hydra/job_logging": "disabled"}],
       "hydra": {"launcher": {"partition": "debug", "timeout_min": 5}}}, ["-m"])],
)
class TestSlurmPoolLauncherIntegration(IntegrationTestSuite):
    pass


SECOND_APP = '''
import os
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    with open(os.path.join(os.environ["SECOND_APP_OUT"], f"job{HydraConfig.get().job.num}.txt"), "w") as f:
        f.write(f"second_app x={cfg.x} slurm_job={os.environ.get('SLURM_JOB_ID')}\\n")

if __name__ == "__main__":
    main()
'''


def test_a_second_app_launches_with_the_stock_submitit_slurm(tmp_path: Path) -> None:
    app, out = tmp_path / "second_app", tmp_path / "out"
    app.mkdir()
    out.mkdir()
    (app / "my_app.py").write_text(SECOND_APP)
    (app / "config.yaml").write_text("x: 0\n")
    proc = subprocess.run([sys.executable, "my_app.py", "-m", "hydra/launcher=submitit_slurm", *SLURM, "x=1,2"], cwd=app,
                          env={**os.environ, "SECOND_APP_OUT": str(out)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    texts = sorted(p.read_text() for p in out.glob("job*.txt"))
    assert [t.split(" slurm_job=")[0] for t in texts] == ["second_app x=1", "second_app x=2"]
    assert all(t.split("slurm_job=")[1].strip() not in ("", "None") for t in texts), texts  # they ran as SLURM jobs
    [multirun] = app.glob("multirun/*/*/multirun.yaml")
    target = yaml.safe_load(multirun.read_text())["hydra"]["launcher"]["_target_"]
    assert target == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert not (app / "results").exists()

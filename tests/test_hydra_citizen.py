"""fewshot-eval among other Hydra apps: no side effects on a second app in the same environment, and
Hydra's per-job record (``.hydra/``, one log per job, ``multirun.yaml``) in fewshot-eval's own sweeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_helpers import run_cli

SECOND_APP = '''
import os
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    hc = HydraConfig.get()
    with open(os.path.join(os.environ["SECOND_APP_OUT"], f"job{hc.job.num}.txt"), "w") as f:
        f.write(f"second_app x={cfg.x} mode={hc.mode.name} pid={os.getpid()}\\n")
    return cfg.x

if __name__ == "__main__":
    main()
'''


@pytest.fixture
def second_app(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A minimal Hydra app of its own (config ``x: 0``), nothing to do with fewshot-eval; (its dir, its env)."""
    app = tmp_path / "second_app"
    app.mkdir()
    (app / "my_app.py").write_text(SECOND_APP)
    (app / "config.yaml").write_text("x: 0\n")
    out = tmp_path / "second_out"
    out.mkdir()
    return app, {**os.environ, "SECOND_APP_OUT": str(out)}


def run_app(app: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "my_app.py", *args], cwd=app, env=env, capture_output=True, text=True, timeout=300)


def test_a_second_app_keeps_the_stock_slurm_launcher(second_app) -> None:
    app, env = second_app
    proc = run_app(app, env, "--cfg", "hydra", "hydra/launcher=submitit_slurm")
    assert proc.returncode == 0, proc.stderr
    launcher = yaml.safe_load(proc.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    info = run_app(app, env, "--info", "defaults-tree", "hydra/launcher=submitit_slurm")
    assert info.returncode == 0 and "fewshot" not in info.stdout.replace("fewshot_eval", ""), info.stdout
    # and fewshot-eval, in the same environment, still gets its pool launcher under the same name
    ours = run_cli(["--cfg", "hydra", "hydra/launcher=submitit_slurm"], app).stdout
    assert yaml.safe_load(ours)["hydra"]["launcher"]["_target_"] == "hydra_plugins.fewshot_eval_plugins.slurm_launcher.SlurmPoolLauncher"


@pytest.mark.parametrize("launcher", ["local", "local_parallel"])
def test_a_second_app_runs_its_own_task_with_our_local_launchers(second_app, launcher: str) -> None:
    app, env = second_app
    proc = run_app(app, env, "-m", f"hydra/launcher={launcher}", "x=1,2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = Path(env["SECOND_APP_OUT"])
    texts = sorted(p.read_text() for p in out.glob("job*.txt"))
    assert [t.split(" pid=")[0] for t in texts] == ["second_app x=1 mode=MULTIRUN", "second_app x=2 mode=MULTIRUN"]
    assert not list(app.rglob("results.json")) and not (app / "results").exists()
    [sweep] = list((app / "multirun").glob("*/*"))
    assert (sweep / "multirun.yaml").exists()  # Hydra's basic sweeper
    for n in (0, 1):
        assert (sweep / str(n) / ".hydra" / "config.yaml").exists() and (sweep / str(n) / "my_app.log").exists()


def test_the_fewshot_sweeper_in_another_app_says_so_in_one_line(second_app) -> None:
    app, env = second_app
    proc = run_app(app, env, "-m", "hydra/sweeper=fewshot", "x=1,2")
    assert proc.returncode != 0
    assert "hydra/sweeper=fewshot plans fewshot-eval's model x task grid, but this app has no 'model' config group" in proc.stderr
    assert "Traceback" not in proc.stderr and "KeyError" not in proc.stderr


# ---- fewshot-eval's own sweeps keep Hydra's per-job record ------------------------------------------
def sweep_dir(workdir: Path) -> Path:
    [d] = (workdir / "results" / ".hydra_sweeps").iterdir()
    return d


@pytest.mark.parametrize("launcher", ["local", "local_parallel"])
def test_each_job_has_its_hydra_dir_and_its_own_log(workdir: Path, launcher: str) -> None:
    run_cli(["-m", "model=random,majority", "task=copa_demo", "nshot=0", f"hydra/launcher={launcher}"], workdir)
    d = sweep_dir(workdir)
    multirun = yaml.safe_load((d / "multirun.yaml").read_text())
    assert multirun["hydra"]["overrides"]["task"] == ["model=random,majority", "task=copa_demo", "nshot=0"]
    for n, (model, other) in enumerate((("random", "majority"), ("majority", "random"))):
        job = d / str(n)
        assert (job / ".hydra" / "config.yaml").exists()
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert f"model={model}" in overrides and any(o.startswith("planned_id=") for o in overrides)
        hydra_yaml = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_yaml["job"]["num"] == n and hydra_yaml["job"]["id"] and hydra_yaml["mode"] == "MULTIRUN"
        assert "planned_id" not in hydra_yaml["job"]["override_dirname"] and f"model={model}" in hydra_yaml["job"]["override_dirname"]
        log = (job / "fewshot_eval.log").read_text()
        assert f"done {model} x copa_demo" in log.replace("[1/2] ", "").replace("[2/2] ", "") and f"{other} x copa_demo" not in log


def test_output_subdir_null_leaves_out_the_hydra_dirs(workdir: Path) -> None:
    run_cli(["-m", "model=random,majority", "task=copa_demo", "nshot=0", "hydra.output_subdir=null"], workdir)
    d = sweep_dir(workdir)
    assert not list(d.rglob(".hydra")) and (d / "1" / "fewshot_eval.log").exists()


def test_local_parallel_takes_interpolated_sweep_subdirs(workdir: Path) -> None:
    out = run_cli(["-m", "model=random,majority", "task=copa_demo", "nshot=0", "hydra/launcher=local_parallel",
                   "hydra.sweep.subdir=job_${hydra.job.num}_${hydra.job.override_dirname}"], workdir).stdout
    assert "ran 2, skipped 0, failed 0" in out
    names = sorted(p.name for p in sweep_dir(workdir).iterdir() if p.is_dir())
    assert names == ["job_0_model=random,nshot=0,task=copa_demo", "job_1_model=majority,nshot=0,task=copa_demo"], names
    for name in names:
        assert (sweep_dir(workdir) / name / "job.log").exists()


def test_the_stock_slurm_entry_is_back_for_the_next_app_of_the_same_process(tmp_path: Path) -> None:
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_store import ConfigStore

    from fewshot_eval.config import conf_dir

    def entry():  # noqa: ANN202
        return ConfigStore.instance().repo["hydra"]["launcher"].get("submitit_slurm.yaml")

    create_config_search_path(str(conf_dir()))  # fewshot-eval's app: our yaml of that name, unvalidated
    assert entry() is None
    create_config_search_path(str(tmp_path))  # any other app
    assert entry() is not None and entry().node._target_.endswith("hydra_submitit_launcher.submitit_launcher.SlurmLauncher")
    assert ConfigStore.instance().repo["hydra"]["launcher"]["fewshot_slurm.yaml"].provider == "fewshot_eval"

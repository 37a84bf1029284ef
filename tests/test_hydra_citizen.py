"""fewshot-eval among other Hydra apps: no side effects on a second app in the same environment, and
Hydra's per-job record (``.hydra/``, one log per job, ``multirun.yaml``) in fewshot-eval's own sweeps."""

from __future__ import annotations

import json
import os
import re
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


# ---- the local launcher keeps Hydra's per-job contract: what Hydra's basic launcher gives ----------------
CONTRACT_RECORDER = '''
import json, os
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf


def plain(c):
    return OmegaConf.to_container(c, enum_to_str=True)


def describe(ret):
    return {"overrides": ret.overrides, "cfg": plain(ret.cfg), "struct": OmegaConf.is_struct(ret.cfg),
            "readonly": OmegaConf.is_readonly(ret.cfg), "hydra_cfg": plain(ret.hydra_cfg),
            "hydra_type": OmegaConf.get_type(ret.hydra_cfg, "hydra").__name__, "hydra_struct": OmegaConf.is_struct(ret.hydra_cfg.hydra),
            "hydra_readonly": OmegaConf.is_readonly(ret.hydra_cfg.hydra),
            "log_file": OmegaConf.select(ret.hydra_cfg, "hydra.job_logging.handlers.file.filename"),  # resolved in the copy
            "working_dir": ret.working_dir, "task_name": ret.task_name, "status": ret.status.name,
            "returned": sorted(ret.return_value), "result": ret.return_value["status"]}


class Recorder(Callback):
    def __init__(self):
        self.returns = []

    def _log(self, event, **extra):
        with open(os.environ["FEWSHOT_TEST_RECORD"], "a") as f:
            f.write(json.dumps({"event": event, **extra}) + "\\n")

    def on_job_start(self, config, task_function, **kwargs):
        self._log("on_job_start", hc=plain(HydraConfig.get()), config=plain(config), cwd=os.getcwd(),
                  env_set=os.environ.get("FEWSHOT_TEST_ENV_SET"), task_function=task_function.__name__)

    def on_job_end(self, config, job_return, **kwargs):
        self.returns.append(job_return)
        self._log("on_job_end", hc=plain(HydraConfig.get()), config=plain(config), ret=describe(job_return))

    def on_multirun_end(self, config, **kwargs):  # each job's JobReturn after the whole sweep: still its own
        self._log("on_multirun_end", returns=[describe(r) for r in self.returns])
'''
# What the two launchers differ in by design: their own config node and name, and local's job ids (<job name>_<num>).
LAUNCHER_TEXT = [("\n    fsync_every_s: 1.0", ""), (', "fsync_every_s": 1.0', ""),  # the local launcher's own setting
                 ("hydra_plugins.fewshot_eval_plugins.local_launcher.LocalLauncher", "hydra._internal.core_plugins.basic_launcher.BasicLauncher"),
                 ("hydra/launcher=local", "hydra/launcher=basic"), ("hydra/launcher: local", "hydra/launcher: basic"),
                 ('"hydra/launcher": "local"', '"hydra/launcher": "basic"'),
                 *((f"id: fewshot_eval_{n}", f"id: '{n}'") for n in range(3)), *((f'"id": "fewshot_eval_{n}"', f'"id": "{n}"') for n in range(3))]


def contract_run(tmp_path: Path, launcher: str) -> tuple[str, dict[str, str]]:
    """A 3-job sweep with a recording callback, ``hydra.job.chdir`` and ``hydra.job.env_set``: (the records, each
    job's ``.hydra/*.yaml`` and log), the run's own paths written ROOT and the local launcher's own text as the basic one's."""
    work, out = tmp_path / f"work_{launcher}", tmp_path / launcher
    work.mkdir()
    (work / "fewshot_contract_recorder.py").write_text(CONTRACT_RECORDER)
    record = tmp_path / f"{launcher}.jsonl"
    run_cli(["-m", "model=random", "task=copa_demo", "nshot=0", "seed=0,1,2", f"output_dir={out}", f"hydra/launcher={launcher}",
             f"hydra.sweep.dir={out}/sweep", "hydra.job.chdir=true", "++hydra.job.env_set.FEWSHOT_TEST_ENV_SET=on",
             "+hydra.callbacks.rec._target_=fewshot_contract_recorder.Recorder"], work, env={"FEWSHOT_TEST_RECORD": str(record)})
    files = {f"{n}/{name}": (out / "sweep" / str(n) / name).read_text()
             for n in range(3) for name in (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "fewshot_eval.log")}

    def norm(text: str) -> str:
        text = text.replace(str(out), "ROOT").replace(str(work), "WORK")
        for a, b in LAUNCHER_TEXT:
            text = text.replace(a, b)
        return text

    return norm(record.read_text()), {k: norm(v) for k, v in files.items()}


def test_the_local_launcher_keeps_hydras_per_job_contract(tmp_path: Path) -> None:
    """Each job's ``.hydra/`` files (byte for byte), ``HydraConfig.get()`` and the config as callbacks see them,
    ``hydra.job.chdir``, ``hydra.job.env_set``, the ``JobReturn`` fields (during and after the sweep) and the
    job's own log are those of Hydra's basic launcher (Hydra's ``run_job``) for the same sweep."""
    local, local_files = contract_run(tmp_path, "local")
    basic, basic_files = contract_run(tmp_path, "basic")
    events = [json.loads(line) for line in local.splitlines()]
    assert [e["event"] for e in events] == ["on_job_start", "on_job_end"] * 3 + ["on_multirun_end"]
    assert [e["hc"]["job"]["num"] for e in events[:-1]] == [0, 0, 1, 1, 2, 2]
    assert [e["cwd"] for e in events[:-1:2]] == [f"ROOT/sweep/{n}" for n in range(3)]  # chdir
    assert {e["env_set"] for e in events[:-1:2]} == {"on"}
    rets = events[-1]["returns"]
    assert [r["cfg"]["seed"] for r in rets] == [0, 1, 2] and [r["log_file"] for r in rets] == [f"ROOT/sweep/{n}/fewshot_eval.log" for n in range(3)]
    assert rets == [e["ret"] for e in events[1:-1:2]]  # the returns kept their job's values after the sweep
    for a, b in zip(local.splitlines(), basic.splitlines()):
        assert json.loads(a) == json.loads(b)
    assert len(local.splitlines()) == len(basic.splitlines())
    for name, text in basic_files.items():
        if name.endswith(".log"):  # each job logs its own line ([n/3]: the local launcher's progress prefix)
            def line(log: str) -> str:
                return re.sub(r"\[\d/3\] | in [\d.]+s", "", log.split("] - ", 1)[1])

            assert text.count("done ") == 1 and line(local_files[name]) == line(text), (local_files[name], text)
        else:
            assert local_files[name] == text, name


def test_a_kept_job_return_holds_its_configs_as_bytes_until_read() -> None:
    """What a local sweep keeps of each finished job: ``cfg`` and ``hydra_cfg`` pickled (a few KB, nothing for the
    garbage collector to walk), read back as equal configs with their flags, the same object on each read."""
    import pickle

    from omegaconf import DictConfig, OmegaConf

    from fewshot_eval.launch.inprocess_job import PackedJobReturn, Pickled

    cfg = OmegaConf.create({"seed": 3, "model": {"name": "random", "eval": {"scoring": "sum"}}})
    OmegaConf.set_struct(cfg, True)
    hydra_cfg = OmegaConf.create({"hydra": {"job": {"num": 3}}})
    ret = PackedJobReturn(overrides=["seed=3"], cfg=cfg, hydra_cfg=Pickled(pickle.dumps(hydra_cfg)))
    assert ret.cfg is cfg and ret.hydra_cfg == hydra_cfg  # the object the task function got; the hydra copy once read
    ret.pack()
    assert all(type(ret.__dict__[a]) is Pickled for a in ("_cfg", "_hydra_cfg"))
    cfg.seed = 4  # changed after the job ended: the kept return is as it was
    back = ret.cfg
    assert isinstance(back, DictConfig) and back is not cfg and back.seed == 3 and OmegaConf.is_struct(back)
    assert ret.cfg is back and ret.hydra_cfg.hydra.job.num == 3 and ret.overrides == ["seed=3"]


def test_kept_parse_trees_resolve_each_config_by_its_own_values() -> None:
    """While a local sweep's jobs run, OmegaConf's parse trees are kept per interpolation string: the same string
    still resolves against each config's own values, a malformed one fails every time, and afterwards OmegaConf
    parses as before."""
    import omegaconf.base
    from omegaconf import OmegaConf
    from omegaconf.errors import GrammarParseError

    from fewshot_eval.launch.inprocess_job import parse_trees_kept

    original = omegaconf.base.parse
    with parse_trees_kept():
        assert omegaconf.base.parse is not original
        one, two = (OmegaConf.create({"n": n, "dir": "out/${n}/${oc.env:FEWSHOT_NO_SUCH_VAR,x}"}) for n in (1, 2))
        assert [one.dir, two.dir, one.dir] == ["out/1/x", "out/2/x", "out/1/x"]
        for _ in range(2):
            with pytest.raises(GrammarParseError):
                _ = OmegaConf.create({"bad": "${n"}).bad
    assert omegaconf.base.parse is original

"""Site profiles (``conf/site/<name>.yaml``) without a cluster: validation, selection and detection by
ClusterName (a stand-in ``scontrol`` on PATH), precedence against model settings' ``slurm:`` and
``hydra.launcher``, and the site's ``env`` while planning. The sbatch scripts they give, and a job run
through a container wrapper, are tested on the real cluster: tests/slurm/test_site_profiles.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.api import plan
from fewshot_eval.config import ConfigError
from fewshot_eval.launch.slurm.pools import Pool, executor_parameters, python_command, setup_lines
from fewshot_eval.settings import site_profile

SCONTROL = """#!/bin/sh
echo "scontrol $*" >> {calls}
echo "ClusterName             = {name}"
echo "MaxArraySize            = 1001"
"""


@pytest.fixture
def fake_scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``scontrol`` on PATH that names the cluster; returns (env for a subprocess, its call log)."""
    bin_dir, calls = tmp_path / "fakebin", tmp_path / "scontrol.calls"
    bin_dir.mkdir()

    def make(name: str = "alps") -> dict[str, str]:
        (bin_dir / "scontrol").write_text(SCONTROL.format(calls=calls, name=name))
        (bin_dir / "scontrol").chmod(0o755)
        path = f"{bin_dir}:{os.environ['PATH']}"
        monkeypatch.setenv("PATH", path)
        return {"PATH": path}

    return make, calls


def conf_with(tmp_path: Path, **sites: str) -> Path:
    d = tmp_path / "siteconf"
    (d / "site").mkdir(parents=True, exist_ok=True)
    (d / "model").mkdir(exist_ok=True)
    (d / "model" / "hubby.yaml").write_text("name: hubby\npredictor: clm\nweights: org/tiny\n")
    for name, text in sites.items():
        (d / "site" / f"{name}.yaml").write_text(text)
    return d


# ---- the schema -------------------------------------------------------------------------------------
def test_profile_validation_names_file_key_and_valid_keys() -> None:
    ok = site_profile({"partition": "gpu", "env": {"HF_HOME": "/s/hf", "N": 3}, "gpu_gres": "gpu:a100:{gpus}"}, "x")
    assert ok["partition"] == "gpu" and ok["env"] == {"HF_HOME": "/s/hf", "N": "3"} and ok["setup"] == [] and ok["wrapper"] is None
    with pytest.raises(ConfigError, match=r"site/x.yaml: unknown key 'partion'. Valid keys: clusters, partition, account, qos, .*wrapper, python"):
        site_profile({"partion": "gpu"}, "x")
    with pytest.raises(ConfigError, match=r"site/x.yaml: gpu_gres 'gpu:2' has no '\{gpus\}'"):
        site_profile({"gpu_gres": "gpu:2"}, "x")
    with pytest.raises(ConfigError, match=r"site/x.yaml: env key 'HF-HOME' is not an environment variable name"):
        site_profile({"env": {"HF-HOME": "/x"}}, "x")
    with pytest.raises(ConfigError, match=r"site/x.yaml: key 'setup' must be list, got 'module load x'"):
        site_profile({"setup": "module load x"}, "x")
    with pytest.raises(ConfigError, match=r"site/x.yaml: 'clusters' must be a list of SLURM cluster names"):
        site_profile({"clusters": [1]}, "x")


def test_packaged_profiles_are_valid() -> None:
    from fewshot_eval.config import conf_dir
    from fewshot_eval.launch.slurm.site_profiles import load_profile, profiles

    found = profiles([conf_dir()])
    assert {"example", "none"} <= set(found)
    example = load_profile("example", found["example"])
    assert example["wrapper"].startswith("apptainer exec --nv") and example["gpu_gres"] == "gpu:{gpus}" and "HF_HOME" in example["env"]


# ---- precedence: site < model setting's slurm: < hydra.launcher -----------------------------------------
LAUNCHER = {"name": "fewshot", "partition": None, "account": None, "qos": None, "constraint": None, "gres": None, "cpus_per_task": None,
            "timeout_min": None, "mem_gb": None, "nodes": None, "gpus_per_node": None, "tasks_per_node": None, "array_parallelism": 256,
            "mail_type": None, "setup": None, "additional_parameters": {}, "submitit_folder": "x/%j", "max_num_timeout": 3, "wait": False,
            "stderr_to_stdout": False, "signal_delay_s": 120}
SITE = site_profile({"partition": "site-p", "account": "site-a", "qos": "site-q", "constraint": "site-c", "gpu_gres": "gpu:h100:{gpus}",
                     "env": {"HF_HOME": "/shared/hf cache"}, "setup": ["module load cuda"], "sbatch": {"reservation": "site", "nice": 5}}, "s")


def pool(gpus: int = 2, **slurm) -> Pool:
    res = {"nodes": 1, "gpus_per_node": gpus, "tasks_per_node": 1, "cpus_per_task": 4, "mem_gb": None, "timeout_min": 30}
    return Pool("m", 2, res, False, slurm={"exclusive": False, "sbatch": {}, "setup": [], **slurm})


def test_site_values_apply_when_nothing_else_sets_them() -> None:
    p = executor_parameters(LAUNCHER, pool(), SITE)
    assert (p["slurm_partition"], p["slurm_account"], p["slurm_qos"], p["slurm_constraint"]) == ("site-p", "site-a", "site-q", "site-c")
    assert p["slurm_gres"] == "gpu:h100:2" and "gpus_per_node" not in p  # the cluster's spelling replaces --gpus-per-node
    assert p["slurm_additional_parameters"] == {"reservation": "site", "nice": 5}
    assert p["slurm_setup"] == ["export HF_HOME='/shared/hf cache'", "module load cuda"]
    cpu = executor_parameters(LAUNCHER, pool(gpus=0), SITE)  # no GPUs: no gres
    assert "slurm_gres" not in cpu and "gpus_per_node" not in cpu
    plain = executor_parameters(LAUNCHER, pool(), None)  # no site: as before
    assert plain["gpus_per_node"] == 2 and not any(k in plain for k in ("slurm_partition", "slurm_gres", "slurm_setup", "slurm_additional_parameters"))


def test_model_slurm_options_win_over_the_site_and_launcher_values_over_both() -> None:
    model = pool(partition="model-p", qos="model-q", gres="gpu:a100:2", sbatch={"nice": 7}, setup=["conda activate m"])
    p = executor_parameters(LAUNCHER, model, SITE)
    assert (p["slurm_partition"], p["slurm_account"], p["slurm_qos"]) == ("model-p", "site-a", "model-q")
    assert p["slurm_gres"] == "gpu:a100:2" and "gpus_per_node" not in p  # the model's literal gres wins over the site's template
    assert p["slurm_additional_parameters"] == {"reservation": "site", "nice": 7}
    launcher = {**LAUNCHER, "partition": "cli-p", "account": "cli-a", "gres": "gpu:3", "additional_parameters": {"nice": 9}, "setup": ["echo cli"]}
    p = executor_parameters(launcher, model, SITE)
    assert (p["slurm_partition"], p["slurm_account"], p["slurm_qos"], p["slurm_gres"]) == ("cli-p", "cli-a", "model-q", "gpu:3")
    assert p["slurm_additional_parameters"] == {"reservation": "site", "nice": 9}
    assert p["slurm_setup"] == ["export HF_HOME='/shared/hf cache'", "module load cuda", "echo cli", "conda activate m"]


def test_wrapper_and_python_make_the_job_command() -> None:
    assert python_command(None) is None and python_command(SITE) is None
    assert python_command({"wrapper": "apptainer exec --nv /i/eval.sif"}) == f"apptainer exec --nv /i/eval.sif {sys.executable}"
    assert python_command({"wrapper": "apptainer exec /i.sif", "python": "python3"}) == "apptainer exec /i.sif python3"
    assert python_command({"python": "/opt/venv/bin/python"}) == "/opt/venv/bin/python"
    assert setup_lines({"env": {"A": "$HOME/x"}}) == ["export A='$HOME/x'"]  # exported as written (use ${oc.env:HOME} to expand)


# ---- selection, detection, errors ---------------------------------------------------------------------
def test_unknown_site_swept_site_and_bad_key_fail_at_planning(tmp_path: Path, workdir: Path) -> None:
    conf = conf_with(tmp_path, typo="partion: gpu\n")
    bad = run_cli(["-m", "model=random", "task=copa_demo", "site=bogus", "dry_run=true"], workdir, check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "fewshot-eval: error: Unknown site 'bogus'. Available: example, none. Add site/bogus.yaml to a config dir (--config-dir) or pick one of these.")
    swept = run_cli(["-m", "model=random", "task=copa_demo", "site=example,none", "dry_run=true"], workdir, check=False)
    assert swept.returncode == 2 and "'site=example,none': a sweep runs on one site" in swept.stderr and "Available: example, none" in swept.stderr
    typo = run_cli(["-m", "--config-dir", str(conf), "model=random", "task=copa_demo", "site=typo", "dry_run=true"], workdir, check=False)
    assert typo.returncode == 2 and "site/typo.yaml: unknown key 'partion'. Valid keys: clusters, partition," in typo.stderr
    assert len(typo.stderr.strip().splitlines()) == 1


def test_detected_by_cluster_name_with_the_slurm_launcher_only(tmp_path: Path, workdir: Path, fake_scontrol) -> None:
    make, calls = fake_scontrol
    env = make("alps")
    conf = conf_with(tmp_path, eiger="clusters: [alps, alps2]\npartition: normal\n", broken="partion: x\n", todi="partition: debug\n")
    args = ["-m", "--config-dir", str(conf), "model=random", "task=copa_demo", "dry_run=true"]
    slurm = run_cli(args + ["hydra/launcher=submitit_slurm"], workdir, env=env).stdout
    assert "site profile 'eiger' (detected: ClusterName=alps): partition=normal" in slurm  # a broken profile for another cluster is not read
    assert "site profile" not in run_cli(args + ["hydra/launcher=submitit_slurm", "site=none"], workdir, env=env).stdout
    assert "site profile 'todi' (site=todi)" in run_cli(args + ["hydra/launcher=submitit_slurm", "site=todi"], workdir, env=env).stdout
    calls.unlink()
    assert "site profile" not in run_cli(args, workdir, env=env).stdout and not calls.exists()  # a local sweep asks no scontrol
    env = make("todi")  # the file name counts as a cluster name
    assert "site profile 'todi' (detected: ClusterName=todi)" in run_cli(args + ["hydra/launcher=submitit_slurm"], workdir, env=env).stdout
    env = make("nowhere")
    assert "site profile" not in run_cli(args + ["hydra/launcher=submitit_slurm"], workdir, env=env).stdout
    (conf / "site" / "eiger2.yaml").write_text("clusters: [alps]\n")
    env = make("alps")
    two = run_cli(args + ["hydra/launcher=submitit_slurm"], workdir, env=env, check=False)
    assert two.returncode == 2 and "site profiles eiger, eiger2 all claim SLURM cluster 'alps'" in two.stderr


def test_the_sites_env_is_what_planning_and_status_see(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "shared-hf"
    (cache / "hub" / "models--org--tiny").mkdir(parents=True)
    conf = conf_with(tmp_path, shared=f"env: {{HF_HOME: {cache}}}\n")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    args = ["model=hubby", "task=copa_demo", "nshot=0", f"output_dir={workdir / 'results'}"]
    _, [job] = plan(args, [conf])
    assert "not in the local cache" in job.detail and "hf_offline=true" not in job.overrides
    planner, [job] = plan([*args, "site=shared"], [conf])
    assert planner.site.name == "shared" and planner.site.options["env"] == {"HF_HOME": str(cache)}
    assert "not in the local cache" not in job.detail
    assert os.environ["HF_HOME"] == str(tmp_path / "empty-hf")  # put back after planning
    out = run_cli(["status", "--config-dir", str(conf), *args, "site=shared"], workdir, env={"HF_HOME": str(tmp_path / "empty-hf")}).stdout
    assert "site profile 'shared' (site=shared): env HF_HOME" in out


def test_site_is_not_part_of_a_results_identity(tmp_path: Path, workdir: Path) -> None:
    conf = conf_with(tmp_path, a="partition: x\n")
    args = ["model=random", "task=copa_demo", "nshot=0", f"output_dir={workdir / 'results'}"]
    [plain], [with_site] = plan(args, [conf])[1], plan([*args, "site=a"], [conf])[1]
    assert plain.unit.result_dir == with_site.unit.result_dir
    run_cli(["-m", "--config-dir", str(conf), *args, "site=a"], workdir)  # a local sweep with a site runs as without
    assert "1 skip: complete" in run_cli(["-m", "--config-dir", str(conf), *args, "dry_run=true"], workdir).stdout

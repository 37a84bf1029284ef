"""Site profiles on the real test cluster (ClusterName ``fewshot``): the sbatch script each option gives
(golden files, tests/slurm/golden/site_*.sbatch; FEWSHOT_UPDATE_GOLDEN=1 rewrites them), the precedence
site < model setting's ``slurm:`` < ``hydra.launcher`` as SLURM records it, and a job that runs through a
container wrapper: a stand-in ``apptainer`` on PATH records its arguments and environment, then runs the
command (no container runtime here). Jobs are held where they only need to be looked at, then cancelled."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli

pytestmark = pytest.mark.slurm

GOLDEN = Path(__file__).parent / "golden"
HOLD = "+hydra.launcher.additional_parameters.hold=true"
MODELS = {
    "site_gpu": "name: site_gpu\npredictor: clm\nweights: tiny-gpt2\nresources: {gpus_per_node: 2, timeout_min: 5}\n",
    "site_plain": "name: site_plain\npredictor: random\nresources: {timeout_min: 5}\n",
    "site_own": "name: site_own\npredictor: random\nresources: {timeout_min: 5}\n"
                "slurm: {partition: gpu, sbatch: {nice: 7}, setup: ['echo model-setup']}\n",
}
# one profile per option (site=<name>); each gives tests/slurm/golden/site_<name>.sbatch
OPTIONS = {
    "partition_account_qos": "partition: gpu\naccount: root\nqos: normal\n",
    "gpu_gres": "gpu_gres: 'gpu:{gpus}'\n",
    "env_setup": "env: {HF_HOME: /shared/hf cache, HF_HUB_OFFLINE: 1}\nsetup: ['module load cuda/12.4', 'source /shared/venv/bin/activate']\n",
    "wrapper_python": "wrapper: apptainer exec --nv --bind /shared /shared/images/eval.sif\npython: python3\n",
    "sbatch": "sbatch: {nice: 5, comment: from-the-site}\n",
}
STAND_IN = """#!/bin/sh
# stand-in for apptainer: records its arguments and HF_HOME, then runs the command after the image
printf 'args: %s\\nHF_HOME: %s\\n' "$*" "$HF_HOME" >> "$FAKE_APPTAINER_LOG"
[ "$1" = exec ] && shift
while [ "${1#-}" != "$1" ]; do case "$1" in --bind|-B) shift 2 ;; *) shift ;; esac; done
shift  # the image
exec "$@"
"""


@pytest.fixture(scope="module")
def conf(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("siteconf")
    (d / "model").mkdir()
    (d / "site").mkdir()
    for name, text in MODELS.items():
        (d / "model" / f"{name}.yaml").write_text(text)
    for name, text in OPTIONS.items():
        (d / "site" / f"{name}.yaml").write_text(text)
    (d / "site" / "prec.yaml").write_text("partition: debug\nsbatch: {nice: 5}\nenv: {SITE_VAR: s}\nsetup: ['echo site-setup']\n")
    return d


def sweep(workdir: Path, conf: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    defaults = [d for d in ("task=copa_demo", "nshot=0") if not any(a.startswith(d.split("=")[0] + "=") for a in args)]  # a key once
    return run_cli(["-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm", *defaults, *args],
                   workdir, env=env, check=check, timeout=240)


def submitted(root: Path, cluster) -> dict[str, dict]:
    """pool -> its submitted.json (job ids tracked for cancelling)."""
    out = {}
    for p in root.rglob("submitted.json"):
        m = json.loads(p.read_text())
        cluster.track(m["job_id"])
        out[m["pool"]] = m
    return out


def script(marker: dict) -> str:
    """The job's sbatch script, with the sweep dir, the Python and the submission token normalised."""
    job = marker["array_job_id"]
    text = (Path(marker["submitit_folder"]) / f"{job}_submission.sh").read_text()  # the array's folder, <token>-<n>
    text = re.sub(rf"(--job-name=fewshot-{marker['pool']})-[0-9a-f]{{8}}\n", r"\1-<TOKEN>\n", text)
    text = re.sub(rf"(\.submitit/{marker['pool']})/[0-9a-f]{{8}}-(\d+)", r"\1/<TOKEN>-\2", text)
    return text.replace(marker["sweep_dir"], "<SWEEP>").replace(sys.executable, "<PYTHON>")


def check_golden(name: str, text: str) -> None:
    import os

    path = GOLDEN / name
    if os.environ.get("FEWSHOT_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file:\n{text}"


def job_field(job_id: str, key: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return re.search(rf"\b{key}=(\S+)", out).group(1)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_site_option_in_the_sbatch_script(slurm_cluster, conf, workdir, option):
    out = sweep(workdir, conf, "model=site_gpu", f"site={option}", HOLD).stdout
    assert f"site profile '{option}' (site={option})" in out and "submitted 1 job to SLURM" in out, out
    [marker] = submitted(workdir / "results", slurm_cluster).values()
    try:
        check_golden(f"site_{option}.sbatch", script(marker))
    finally:
        slurm_cluster.cancel(marker["job_id"])


def test_model_slurm_options_beat_the_site_and_hydra_launcher_beats_both(slurm_cluster, conf, workdir):
    sweep(workdir, conf, "model=site_plain,site_own", "site=prec", HOLD)
    marks = submitted(workdir / "results", slurm_cluster)
    try:
        plain, own = marks["site_plain"]["job_id"], marks["site_own"]["job_id"]
        assert (job_field(plain, "Partition"), job_field(plain, "Nice")) == ("debug", "5")  # the site's
        assert (job_field(own, "Partition"), job_field(own, "Nice")) == ("gpu", "7")  # the model's
        setup = script(marks["site_own"]).split("# setup\n")[1].split("\n\n")[0].splitlines()
        assert setup == ["export SITE_VAR=s", "echo site-setup", "echo model-setup"]
    finally:
        slurm_cluster.cancel(*(m["job_id"] for m in marks.values()))
    sweep(workdir, conf, "model=site_plain,site_own", "site=prec", HOLD, "output_dir=cli", "hydra.launcher.partition=gpu",
          "+hydra.launcher.additional_parameters.nice=9", "hydra.launcher.setup=['echo launcher-setup']")
    marks = submitted(workdir / "cli", slurm_cluster)
    try:
        for m in marks.values():
            assert (job_field(m["job_id"], "Partition"), job_field(m["job_id"], "Nice")) == ("gpu", "9")  # hydra.launcher's
        setup = script(marks["site_own"]).split("# setup\n")[1].split("\n\n")[0].splitlines()
        assert setup == ["export SITE_VAR=s", "echo site-setup", "echo launcher-setup", "echo model-setup"]
    finally:
        slurm_cluster.cancel(*(m["job_id"] for m in marks.values()))


def test_a_detected_site_runs_its_jobs_through_the_container_wrapper(slurm_cluster, conf, workdir, tmp_path):
    bin_dir, log, cache = tmp_path / "standin", tmp_path / "apptainer.log", tmp_path / "hf-site"
    bin_dir.mkdir()
    (bin_dir / "apptainer").write_text(STAND_IN)
    (bin_dir / "apptainer").chmod(0o755)
    site_dir = tmp_path / "clusterconf" / "site"
    site_dir.mkdir(parents=True)
    (site_dir / "ourcluster.yaml").write_text(
        f"clusters: [fewshot]\npartition: debug\nenv: {{HF_HOME: {cache}, FAKE_APPTAINER_LOG: {log}}}\n"
        "setup: ['echo site-setup-ran']\nwrapper: apptainer exec --nv --bind /tmp /images/eval.sif\n")
    env = {"PATH": f"{bin_dir}:{__import__('os').environ['PATH']}"}
    args = ["--config-dir", str(site_dir.parent), "model=site_plain", "task=copa_demo,nli_demo"]
    out = sweep(workdir, conf, *args, "hydra.launcher.wait=true", env=env).stdout
    assert "site profile 'ourcluster' (detected: ClusterName=fewshot): partition=debug" in out
    assert "ran 2, skipped 0, failed 0" in out, out
    records = log.read_text().splitlines()
    calls = [r.removeprefix("args: ") for r in records if r.startswith("args: ")]
    assert len(calls) == 2, records  # one per array task, each the job's command under the wrapper
    for call in calls:
        assert re.fullmatch(rf"exec --nv --bind /tmp /images/eval\.sif {re.escape(sys.executable)} -u -m fewshot_eval\.launch\.slurm\.node_start "
                            r"\S+/\.submitit/site_plain/[0-9a-f]{8}-0", call), call
    assert records.count(f"HF_HOME: {cache}") == 2  # the site's env reached the job
    job_out = next((workdir / "results").rglob("*_0_log.out")).read_text()
    assert "site-setup-ran" in job_out
    results = {p.parent.relative_to(workdir / "results"): json.loads(p.read_text())["results"] for p in (workdir / "results").rglob("results.json")}
    run_cli(["-m", "--config-dir", str(conf), "model=site_plain", "task=copa_demo,nli_demo", "nshot=0", "output_dir=local"], workdir)
    local = {p.parent.relative_to(workdir / "local"): json.loads(p.read_text())["results"] for p in (workdir / "local").rglob("results.json")}
    assert len(results) == 2 and results == local

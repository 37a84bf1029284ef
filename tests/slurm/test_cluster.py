"""Smoke tests of the local SLURM cluster (.ci/slurm/cluster.sh) driven through submitit."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import cloudpickle
import pytest
from submitit.core.utils import UncompletedJobError

pytestmark = pytest.mark.slurm

# The job's python cannot import this test module by name: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _describe(x: int) -> dict:
    import os

    return {
        "value": x * x,
        "host": socket.gethostname(),
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "partition": os.environ.get("SLURM_JOB_PARTITION"),
    }


def _timed_sleep(seconds: float, tag: int) -> tuple[int, float, float]:
    start = time.time()
    time.sleep(seconds)
    return tag, start, time.time()


def test_cluster_is_up(slurm_cluster):
    out = subprocess.run(["sinfo", "-h", "-o", "%P %T %c %G"], capture_output=True, text=True, check=True).stdout
    parts = {line.split()[0].rstrip("*"): line.split() for line in out.splitlines()}
    assert set(slurm_cluster.partitions) <= set(parts)
    for fields in parts.values():
        assert fields[1] in ("idle", "mixed", "allocated"), out
        assert fields[2] == str(slurm_cluster.cpus)
        assert f"gpu:{slurm_cluster.gpus}" in fields[3]


def test_submit_and_result(slurm_cluster, tmp_path):
    ex = slurm_cluster.executor(tmp_path / "sub", name="fewshot-test-smoke")
    job = ex.submit(_describe, 7)
    slurm_cluster.track(job)
    res = slurm_cluster.result_within(job, timeout=60)
    assert res["value"] == 49
    assert res["job_id"] == job.job_id
    assert res["partition"] == slurm_cluster.default_partition
    assert slurm_cluster.wait_for_state(job.job_id, "COMPLETED", timeout=30) == "COMPLETED"


def test_gpu_partition_and_fake_gpus(slurm_cluster, tmp_path):
    ex = slurm_cluster.executor(
        tmp_path / "sub", name="fewshot-test-gpu", slurm_partition=slurm_cluster.gpu_partition, gpus_per_node=2
    )
    job = ex.submit(_describe, 3)
    slurm_cluster.track(job)
    res = slurm_cluster.result_within(job, timeout=60)
    assert res["value"] == 9 and res["partition"] == slurm_cluster.gpu_partition


def test_array_parallelism_throttle(slurm_cluster, tmp_path):
    ex = slurm_cluster.executor(tmp_path / "sub", name="fewshot-test-array", slurm_array_parallelism=2)
    jobs = ex.map_array(_timed_sleep, [4, 4, 4, 4], [0, 1, 2, 3])
    slurm_cluster.track(*jobs)
    array_id = jobs[0].job_id.split("_")[0]

    # while two tasks run the pending remainder is listed as e.g. "12_[2-3%2]"
    def throttled_rows():
        return [
            j
            for j in slurm_cluster.squeue_jobs()
            if j["array_job_id"] == array_id and "%2" in j["id"] and j["reason"] == "JobArrayTaskLimit"
        ]

    rows = slurm_cluster.wait_until(throttled_rows, timeout=20, what="squeue to show the %2 throttle")
    assert rows[0]["state"] == "PENDING"
    running = [j for j in slurm_cluster.squeue_jobs() if j["array_job_id"] == array_id and j["state"] == "RUNNING"]
    assert len(running) <= 2
    scontrol = subprocess.run(["scontrol", "show", "job", array_id], capture_output=True, text=True).stdout
    assert "ArrayTaskThrottle=2" in scontrol

    results = [slurm_cluster.result_within(j, timeout=90) for j in jobs]
    assert sorted(r[0] for r in results) == [0, 1, 2, 3]
    # never more than 2 tasks overlapped, though the node has 8 CPUs
    events = sorted([(s, 1) for _, s, _ in results] + [(e, -1) for _, _, e in results], key=lambda x: (x[0], x[1]))
    live = peak = 0
    for _, d in events:
        live += d
        peak = max(peak, live)
    assert peak == 2, results

    for j in jobs:
        slurm_cluster.wait_for_state(j.job_id, "COMPLETED", timeout=30)
    states = {r["id"]: r["state"] for r in slurm_cluster.sacct_rows(array_id)}
    assert set(states) == {f"{array_id}_{i}" for i in range(4)}, states


def test_scancel_is_cancelled_and_result_raises(slurm_cluster, tmp_path):
    ex = slurm_cluster.executor(tmp_path / "sub", name="fewshot-test-cancel")
    job = ex.submit(time.sleep, 600)
    slurm_cluster.track(job)
    slurm_cluster.wait_for_state(job.job_id, "RUNNING", timeout=30)
    subprocess.run(["scancel", job.job_id], check=True)
    assert slurm_cluster.wait_for_state(job.job_id, "CANCELLED", timeout=30) == "CANCELLED"
    job._results_timeout_s = 2  # no result pickle will ever appear; don't wait 15 s for it
    with pytest.raises(UncompletedJobError):
        slurm_cluster.result_within(job, timeout=90)
    assert job.state.startswith("CANCELLED")

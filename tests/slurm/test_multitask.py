"""A SLURM job of several tasks runs one evaluation: rank 0 evaluates and writes, the others exit.

On the real test cluster (one node, 8 CPUs): ``resources: {nodes: 1, tasks_per_node: 2}``
makes submitit start the job's payload in two tasks (``srun`` with 2 tasks).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_cli

pytestmark = pytest.mark.slurm

MODELS = {
    "two_tasks": "name: two_tasks\npredictor: random\nresources: {nodes: 1, tasks_per_node: 2, timeout_min: 5}\n",
    "two_tasks_comb": "name: two_tasks_comb\npredictor: random\njob: {combine_tasks: true}\n"
                      "resources: {nodes: 1, tasks_per_node: 2, timeout_min: 5}\n",
}


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    (d / "model").mkdir(parents=True)
    for name, text in MODELS.items():
        (d / "model" / f"{name}.yaml").write_text(text)
    return d


def task_logs(results: Path, job_id: str) -> dict[int, str]:
    """rank -> that task's stdout + stderr (submitit writes ``<job>_<rank>_log.out|.err`` into the array's folder,
    ``.submitit/<pool>/<token>-<n>/``)."""
    folder = next(results.glob(f".hydra_sweeps/*/.submitit/*/*/{job_id}_0_log.out")).parent
    out = {}
    for rank in (0, 1):
        out[rank] = "".join((folder / f"{job_id}_{rank}_log.{ext}").read_text() for ext in ("out", "err"))
    return out


@pytest.mark.parametrize("model", ["two_tasks", "two_tasks_comb"])
def test_a_two_task_job_evaluates_once_and_rank_0_writes(slurm_cluster, conf, workdir, model):
    out = run_cli(["-m", "--config-dir", str(conf), "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug",
                   "hydra.launcher.wait=true", f"model={model}", "task=copa_demo", "nshot=0,2", "num_trials=2",
                   "n_eval_samples=4"], workdir, timeout=240).stdout
    assert "ran 2, skipped 0, failed 0" in out, out
    assert "1 node x 2 task" in out
    results = workdir / "results"
    ids = sorted({json.loads(line)["job_id"] for line in (results / "scheduled_jobs.jsonl").read_text().splitlines()})
    slurm_cluster.track(*ids)
    assert len(ids) == (1 if model.endswith("comb") else 2)
    for job_id in ids:
        logs = task_logs(results, job_id)
        # rank 0 evaluated; rank 1 neither evaluated nor found rank 0's lock: it did nothing
        assert "done " in logs[0] and "rank" not in logs[0].split("done ")[0].split("\n")[-1]
        assert logs[1].count("task rank 1 of 2: rank 0 runs this job") == 1
        assert "done " not in logs[1] and "another process is running it" not in logs[1]
        assert "trials" not in logs[1] and "moved the old result" not in logs[1]
    # one writer: each result dir has its results and trials, written once, no leftovers
    dirs = [p.parent for p in results.rglob("results.json")]
    assert len(dirs) == 2
    for d in dirs:
        record = json.loads((d / "results.json").read_text())
        assert record["model"] == model
        assert not list(d.glob("*.tmp*")) and not (d / "submitted.json").exists()
        assert not list(d.parent.glob(f"{d.name}.old*"))  # nothing moved aside by a second writer

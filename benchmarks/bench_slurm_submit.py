"""Submission benchmark (not a test): N jobs over P pools submitted (held) to the test cluster, then cancelled.

    eval "$(.ci/slurm/cluster.sh start)"
    .venv/bin/python benchmarks/bench_slurm_submit.py 5000 5      # prints jobs/s and the per-job payload

Each pool is one model setting (random predictor) with N/P split-trial jobs of one result dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(n: int = 5000, pools: int = 5) -> None:
    work = Path(tempfile.mkdtemp(prefix="fewshot-bench-"))
    conf = work / "conf"
    (conf / "model").mkdir(parents=True)
    names = [f"bench{k}" for k in range(pools)]
    for name in names:
        (conf / "model" / f"{name}.yaml").write_text(f"name: {name}\npredictor: random\nmax_parallel: 4\nresources: {{timeout_min: 10}}\n")
    cmd = [sys.executable, "-m", "fewshot_eval", "-m", "--config-dir", str(conf), f"model={','.join(names)}", "task=copa_demo",
           "nshot=1", f"num_trials={n // pools}", "split_trials=true", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug",
           "+hydra.launcher.additional_parameters.hold=true"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.monotonic() - t0
    log = work / "results" / "scheduled_jobs.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    arrays = sorted({r["job_id"].split("_")[0] for r in rows})
    pkls = list((work / "results").rglob("*.pkl"))
    size = sum(p.stat().st_size for p in pkls)
    print(proc.stdout.splitlines()[0] if proc.stdout else proc.stderr[-2000:])
    print(f"{len(rows)} jobs in {len(arrays)} arrays over {pools} pools submitted in {wall:.1f}s wall: {len(rows) / wall:.0f} jobs/s; "
          f"payload {size / 1e6:.1f} MB in {len(pkls)} pickles ({size / max(1, len(rows)) / 1e3:.1f} KB per job)")
    for i in range(0, len(arrays), 200):
        subprocess.run(["scancel", *arrays[i:i + 200]], check=False)
    if proc.returncode:
        sys.exit(proc.returncode)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))

"""``fewshot-eval status`` on a large sweep: counts per model x task setting, individual lines only for
failed and error jobs (capped, "... and N more"), SLURM notes grouped; exit 1 when a job failed, 2 when
one is an error row, 0 otherwise.

The failures are recorded by the real recorder (what a failing job writes) into result dirs the real
planner chose; submitted jobs carry a ``submitted.json`` SLURM cannot be asked about (no squeue/sacct
on PATH), so they are pending whatever runs on this machine.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from cli_helpers import run_cli

NSHOT = "nshot=0,1,2,3,4,5"


def conf(tmp_path: Path, n_models: int = 4, n_tasks: int = 5, broken_task: bool = False) -> Path:
    d = tmp_path / "conf"
    (d / "model").mkdir(parents=True)
    (d / "task").mkdir()
    for i in range(n_models):
        (d / "model" / f"sm{i}.yaml").write_text(f"name: sm{i}\npredictor: random\nresources: {{timeout_min: 10}}\n")
    for j in range(n_tasks):
        (d / "task" / f"st{j}.yaml").write_text(f"run_name: st\ntasks: [copa_demo]\neval: {{seed: {j}}}\n")
    if broken_task:
        (d / "task" / "st_bad.yaml").write_text("run_name: st\ntasks: [copa_demo]\neval: {templates: [no_such_template]}\n")
    return d


def selection(workdir: Path, cdir: Path, tasks: str = "glob(st?)") -> list[str]:
    return ["--config-dir", str(cdir), "model=glob(sm*)", f"task={tasks}", NSHOT, f"output_dir={workdir / 'results'}", "hydra/launcher=submitit_slurm"]


def plan_jobs(sel: list[str]) -> list:
    from fewshot_eval.api import plan

    cdir = sel[1]
    _, jobs = plan(sel[2:], config_dirs=[cdir])
    return jobs


NO_SLURM = {"PATH": os.path.dirname(sys.executable)}  # no squeue/sacct/sbatch: submitted jobs are pending


def test_large_sweep_status_caps_failed_lines_groups_slurm_and_exits_1(workdir: Path, tmp_path: Path) -> None:
    from fewshot_eval.store.failures import record_failure

    cdir = conf(tmp_path)
    sel = selection(workdir, cdir)
    jobs = plan_jobs(sel)
    assert len(jobs) == 4 * 5 * 6
    failed, submitted = jobs[:33], jobs[33:90]
    for k, j in enumerate(failed):
        record_failure(j.unit.result_dir, f"RuntimeError: boom {k % 2}", j.unit.config_digest)
    for k, j in enumerate(submitted):
        j.unit.result_dir.mkdir(parents=True)
        (j.unit.result_dir / "submitted.json").write_text(json.dumps({"scheduler": "slurm", "job_id": f"{500 + k // 8}_{k % 8}", "trials": j.unit.trials}))

    proc = run_cli(["status", "-m", *sel], workdir, env=NO_SLURM, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    assert len(lines) < 4 * 5 + 20 + 15, out  # a row per model x task setting, 20 failed lines, a few more
    [total] = [ln.split() for ln in lines if ln.startswith("all ")]
    head = [h.lower() for h in lines[0].split()]
    assert dict(zip(head[2:], map(int, total[1:]))) == {"pending": 57, "failed": 33, "missing": 30, "total": 120}
    failed_lines = [ln for ln in lines if re.match(r"  sm\d x st\d nshot=\d: RuntimeError: boom", ln)]
    assert len(failed_lines) == 20 and all("[will be retried]" in ln and "(log: " in ln for ln in failed_lines)
    assert "failed (33):" in out and "  ... and 13 more failed jobs" in out
    # 57 pending jobs in 8 arrays: one line for their one kind of note, with an example
    assert "SLURM (57 jobs recorded; arrays 500, 501, 502, 503, 504, 505, 506, 507" in out, out
    [group] = [ln for ln in lines if ln.startswith("  57 jobs: ")]
    assert "SLURM job <id>: SLURM cannot be reached" in group and "(e.g. SLURM job 500_0: " in group


def test_status_exit_status_is_2_for_error_rows_and_0_when_nothing_failed(workdir: Path, tmp_path: Path) -> None:
    cdir = conf(tmp_path, n_models=1, n_tasks=1, broken_task=True)
    ok = run_cli(["status", "-m", *selection(workdir, cdir, tasks="st0")], workdir, env=NO_SLURM)
    assert ok.returncode == 0 and re.search(r"^all\s+6\s+6$", ok.stdout, re.M), ok.stdout
    bad = run_cli(["status", "-m", *selection(workdir, cdir, tasks="st0,st_bad")], workdir, env=NO_SLURM, check=False)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "error (6; the sweep launches nothing until they are fixed or left out):" in bad.stdout
    assert "sm0 x st_bad nshot=0: " in bad.stdout and "no_such_template" in bad.stdout

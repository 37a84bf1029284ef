"""Is a job that was submitted to a scheduler still queued or running?"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Optional

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json

ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}


def slurm_state(job_id: str) -> Optional[str]:
    """The job's state from squeue, else sacct; None when SLURM does not know it."""
    if shutil.which("squeue"):
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    if shutil.which("sacct"):
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    return None


def pending_reason(result_dir: Path) -> Optional[str]:
    """A reason to skip the job as pending, or None when it should be (re)submitted."""
    marker = read_json(result_dir / layout.SUBMITTED)
    if not marker or not marker.get("job_id"):
        return None
    job_id = str(marker["job_id"])
    if not (shutil.which("squeue") or shutil.which("sacct")):
        return f"submitted as SLURM job {job_id}; SLURM cannot be reached from here, so treated as pending"
    state = slurm_state(job_id)
    if state in ACTIVE:
        return f"SLURM job {job_id} is {state}"
    return None

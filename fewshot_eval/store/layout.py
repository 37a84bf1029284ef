"""Where a job's results live.

One result directory per (model setting, task setting, nshot, identity)::

    <output_dir>/<run_name>/<model>/<task>/<nshot>shot.<id8>/
        identity.json            what produced it (every setting that can change the numbers)
        config.yaml              the job's full resolved config
        trial<t>/metrics.json    one trial's metrics, written after its predictions; ``files``: their size, sha256
        trial<t>/<task>.<template>[.<lang>].predictions.jsonl
        results.json             mean/std/95% CI over trials; written last = the completion marker;
                                 ``files``: size and sha256 of every trial file (see store.status)
        submitted.json           SLURM job id of a pending submission (removed when the job ends); the
                                 durable copy is the pool's record in <output_dir>/.slurm_submissions/
        failure.json             failed attempts (error line, log, traceback) until the result completes
        score_cache/trial<t>.sqlite  scored requests of an unfinished trial (resume; see store.score_cache)

``<id8>`` is a digest of the identity, so two settings that differ in anything that changes
the numbers (scoring, calibration, template, predictor, train_sep, seed, n_eval_samples, model
weights ...) never share a directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

RESULTS = "results.json"
IDENTITY = "identity.json"
CONFIG = "config.yaml"
METRICS = "metrics.json"
SUBMITTED = "submitted.json"
FAILURE = "failure.json"
FAILURE_TRACEBACK = "failure.traceback.txt"
LOCK = ".lock"
JOBS_LOG = "scheduled_jobs.jsonl"
SCORE_CACHE = "score_cache"


def result_dir(output_dir: Path, run_name: str, model_key: str, task_key: str, nshot: int, digest: str) -> Path:
    return result_parent(output_dir, run_name, model_key, task_key) / result_name(nshot, digest)


def result_parent(output_dir: Path, run_name: str, model_key: str, task_key: str) -> Path:
    """The dir holding a model and task setting's result dirs (one per nshot and identity)."""
    return output_dir / run_name / model_key / task_key


def result_name(nshot: int, digest: str) -> str:
    return f"{nshot}shot.{digest[:8]}"


def child(parent: Path, name: str) -> Path:
    """``parent / name`` for a single, plain ``name`` (no separator), without parsing it again: pathlib's own
    shortcut where it has one (a plan makes a path per job: 100,000 of them)."""
    make = getattr(parent, "_make_child_relpath", None) if _CHILD_SHORTCUT else None
    return make(name) if make is not None and name and os.sep not in name and name not in (".", "..") else parent / name


_CHILD_SHORTCUT = sys.version_info < (3, 13)  # pathlib's private helper as 3.10-3.12 define it (joins one plain name)


def trial_dir(result_dir: Path, trial: int) -> Path:
    return result_dir / trial_name(trial)


def trial_name(trial: int) -> str:
    return f"trial{trial}"


def predictions_file(result_dir: Path, trial: int, subkey: str) -> Path:
    return trial_dir(result_dir, trial) / f"{subkey}.predictions.jsonl"

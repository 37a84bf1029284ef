"""Deterministic fault points, for tests that kill a sweep or a job at a known place.

    FEWSHOT_FAULT=kill-after-trial:2 fewshot-eval -m ...   # SIGKILL right after the 2nd trial's files are written

``FEWSHOT_FAULT=kill-<point>[:<n>]`` makes a process SIGKILL itself the n-th time (default: the first)
it passes ``<point>``; ``stall-<point>[:<n>]`` makes it sleep there until it is stopped (a job caught
mid-run, for tests that kill its sweep); ``full-<point>[:<n>]`` makes every later write of this
process (and of the processes it starts) fail, as on a disk that just filled up (``RLIMIT_FSIZE`` 0
with ``SIGXFSZ`` ignored: writes fail with ``EFBIG``, creating empty files and dirs still works).
Each process counts its own passes: with ``hydra/launcher=local`` the jobs run in the sweep's process
(one count over the sweep, and the whole sweep dies), with ``local_parallel`` (and on SLURM) each job
process counts from 1 and only that job dies.

Points, and where they are passed:

* ``after-sbatch`` -- ``launch/slurm/submission.py``: the sweep, right after sbatch accepted a submission;
* ``after-commit`` -- ``store/score_cache.py``: a scored batch was committed to a trial's score cache;
* ``after-trial`` -- ``run/job.py``: a trial's predictions and ``metrics.json`` were written (before
  the next trial, or before ``results.json``);
* ``job-start`` -- ``run/job.py``: a job starts (resolved, nothing written yet).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

FAULT_ENV = "FEWSHOT_FAULT"
POINTS = ("after-sbatch", "after-commit", "after-trial", "job-start")

_passes: Counter[str] = Counter()


def fault_point(point: str) -> None:
    """Pass ``point``: SIGKILL this process when ``FEWSHOT_FAULT`` asks for it here, now."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name not in (f"kill-{point}", f"stall-{point}", f"full-{point}"):
        return
    _passes[point] += 1
    try:
        at = int(nth or 1)
    except ValueError:
        raise ValueError(f"{FAULT_ENV}={spec!r}: the pass count after ':' must be an integer, e.g. kill-{point}:3") from None
    if _passes[point] == at:
        if name.startswith("full-"):
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
            return
        if name.startswith("stall-"):
            import time

            while True:
                time.sleep(3600)
        os.kill(os.getpid(), signal.SIGKILL)

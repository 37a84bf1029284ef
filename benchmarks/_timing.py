"""Timing shared by the benchmarks that race lm-evaluation-harness against fewshot-eval.

The scripts beside it import it as ``from _timing import interleaved`` (run as
``python benchmarks/<script>.py``, their own folder is first on ``sys.path``).
"""

from __future__ import annotations

import time
from typing import Any, Callable


def interleaved(theirs_fn: Callable[[], Any], ours_fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any, Any]:
    """(lm-eval's time, ours, lm-eval's last output, ours): the best of ``repeats`` runs of each,
    alternated (theirs, ours, theirs, ...) so that machine noise hits both alike."""
    t_theirs = t_ours = float("inf")
    a = b = None
    for _ in range(repeats):
        t = time.perf_counter()
        a = theirs_fn()
        t_theirs = min(t_theirs, time.perf_counter() - t)
        t = time.perf_counter()
        b = ours_fn()
        t_ours = min(t_ours, time.perf_counter() - t)
    return t_theirs, t_ours, a, b

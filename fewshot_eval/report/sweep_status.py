"""Where a sweep stands: every planned job (:func:`fewshot_eval.api.plan`) as complete, pending,
running, failed, missing, stale, n/a or error -- counted per model and task setting
(``fewshot-eval status``) or shown in the cells of a report (``fewshot-eval report --sweep``).

The counts are the plan's: complete = ``skip: complete``; pending + running = ``skip: pending``
(running: SLURM says RUNNING); failed = ``failed`` plus ``run`` jobs that failed before and
will be retried; missing = the other ``run`` jobs; stale, n/a and error as planned.

``fewshot-eval status ... --missing FILE.csv`` also writes every job without a complete result (n/a ones
left out) as a job list (:mod:`fewshot_eval.plan.job_list`) that ``fewshot-eval -m job_list=FILE.csv`` runs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from fewshot_eval.plan.planner import ERROR, FAILED, NOT_APPLICABLE, RUN, SKIP_COMPLETE, SKIP_PENDING, SKIP_STALE
from fewshot_eval.store import layout
from fewshot_eval.store.failures import read_failures

STATES = ("complete", "pending", "running", "failed", "missing", "stale", "n/a", "error")


def state(job: Any) -> str:
    """One of STATES for a planned job."""
    s, detail = job.status, job.detail or ""
    if s == SKIP_COMPLETE:
        return "complete"
    if s == SKIP_PENDING:
        return "running" if " is RUNNING" in detail else "pending"
    if s == FAILED:
        return "failed"
    if s == RUN:
        return "failed" if "retry: failed" in detail else "missing"
    if s == SKIP_STALE:
        return "stale"
    if s == NOT_APPLICABLE:
        return "n/a"
    if s == ERROR:
        return "error"
    return s


def label(job: Any) -> Optional[str]:
    """A report cell's label for a job without a complete result (None: complete)."""
    st = state(job)
    return None if st == "complete" else st


def complete_results(jobs: Iterable[Any]) -> list[Path]:
    return [j.unit.result_dir / layout.RESULTS for j in jobs if state(j) == "complete"]


def counts(jobs: list[Any]) -> dict[tuple[str, str], Counter]:
    out: dict[tuple[str, str], Counter] = {}
    for j in jobs:
        out.setdefault((j.unit.model_key, j.unit.task_key), Counter())[state(j)] += 1
    return out


def last_failure(job: Any) -> tuple[str, str]:
    """(last error line, log path) of a failed job, from its failure.json (else the plan's note)."""
    attempts = read_failures(job.unit.result_dir)
    if attempts:
        a = attempts[-1]
        return str(a.get("error") or "?"), str(a.get("log") or a.get("traceback") or job.unit.result_dir / layout.FAILURE)
    return job.detail or "?", str(job.unit.result_dir)


def status_text(jobs: list[Any], elapsed: float, root: Optional[Path] = None) -> str:
    by = counts(jobs)
    used = [s for s in STATES if any(c[s] for c in by.values())] or ["complete", "missing"]
    head = ["MODEL", "TASK"] + [s.upper() for s in used] + ["TOTAL"]
    rows = [[m, t] + [str(c[s]) for s in used] + [str(sum(c.values()))] for (m, t), c in by.items()]
    total = Counter()
    for c in by.values():
        total.update(c)
    rows.append(["all", ""] + [str(total[s]) for s in used] + [str(sum(total.values()))])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip() for r in [head] + rows]
    summary = ", ".join(f"{total[s]} {s}" for s in STATES if total[s])
    lines.append("")
    lines.append(f"{len(jobs)} jobs planned in {elapsed:.2f}s: {summary}." + (f" Results under {root}" if root else ""))
    failing = [j for j in jobs if state(j) == "failed"]
    if failing:
        lines.append("\nfailed:")
        for j in failing:
            err, log = last_failure(j)
            lines.append(f"  {j.unit.model_key} x {j.unit.task_key} nshot={j.unit.nshot}: {err} (log: {log})"
                         + ("  [will be retried]" if j.status == RUN else "  [not relaunched: max_failures]"))
    slurm = [j for j in jobs if state(j) in ("pending", "running") or "SLURM job" in (j.detail or "")]
    if slurm:
        lines.append("\nSLURM:")
        for j in slurm:
            lines.append(f"  {j.unit.model_key} x {j.unit.task_key} nshot={j.unit.nshot}: {j.detail}")
    errors = [j for j in jobs if state(j) in ("error", "stale")]
    if errors:
        lines.append("\nerror / stale:")
        for j in errors[:50]:
            lines.append(f"  {j.unit.model_key} x {j.unit.task_key} nshot={j.unit.nshot}: {j.detail}")
        if len(errors) > 50:
            lines.append(f"  ... and {len(errors) - 50} more")
    return "\n".join(lines) + "\n"


def write_missing(path: Path, jobs: list[Any], config_dirs: Sequence[str], hydra_overrides: Sequence[str] = ()) -> str:
    """Write the jobs without a complete result (and not n/a) to the job list ``path``; returns the line
    that says so and how to run them."""
    import shlex

    from fewshot_eval.plan.job_list import KEY, job_row, write_job_list

    rows = [job_row(j, state(j), config_dirs) for j in jobs if state(j) not in ("complete", "n/a")]
    n = write_job_list(path, rows)
    if not n:
        return f"\nEvery job is complete (or n/a): wrote an empty job list to {path}."
    by = Counter(r["state"] for r in rows)
    states = ", ".join(f"{by[s]} {s}" for s in STATES if by[s])
    command = shlex.join(["fewshot-eval", "-m", f"{KEY}={path}", *hydra_overrides])
    return f"\nWrote {n} job{'s' if n != 1 else ''} without a complete result ({states}) to {path}. Run them: {command}"

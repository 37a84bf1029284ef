"""Where a sweep stands: every planned job (:func:`fewshot_eval.api.plan`) as complete, pending,
running, failed, missing, stale, n/a or error -- counted per model and task setting
(``fewshot-eval status``) or shown in the cells of a report (``fewshot-eval report --sweep``).

The counts are the plan's: complete = ``skip: complete``; pending + running = ``skip: pending``
(running: SLURM says RUNNING); failed = ``failed`` plus ``run`` jobs that failed before and
will be retried (or that SLURM ended FAILED, TIMEOUT ...); missing = the other ``run`` jobs; stale,
n/a and error as planned. ``status`` prints individual lines only for failed and error jobs (at most
20 of each) and groups the rest, so a sweep of 10,000 jobs prints about as many lines as it has
model x task settings; it exits 1 when a job failed, 2 when a job is an error row (:func:`exit_status`).

``fewshot-eval status ... --missing FILE.csv`` also writes every job without a complete result (n/a ones
left out) as a job list (:mod:`fewshot_eval.plan.job_list`) that ``fewshot-eval -m job_list=FILE.csv`` runs.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from fewshot_eval.plan.planner import ERROR, FAILED, NOT_APPLICABLE, RUN, SKIP_COMPLETE, SKIP_PENDING, SKIP_STALE
from fewshot_eval.store import layout
from fewshot_eval.store.failures import read_failures

STATES = ("complete", "pending", "running", "failed", "missing", "stale", "n/a", "error")


# A plan note of a job that SLURM ended with a failure (not a user's scancel, not "no record"): the
# launcher's pending_check writes "resubmit: SLURM job 12_3 was FAILED (log: ...)" / "... timed out 2×".
_SLURM_FAILED = re.compile(r"resubmit: SLURM job \S+ (?:was (?!CANCELLED\b)[A-Z_]+\b|timed out)")


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
        return "failed" if "retry: failed" in detail or _SLURM_FAILED.search(detail) else "missing"
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


SHOWN = 20  # individual lines per section (failed, error); the rest is counted ("... and N more")
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def exit_status(jobs: Iterable[Any]) -> int:
    """``fewshot-eval status``'s exit status: 2 when a job is an ``error`` row (the sweep would launch
    nothing), else 1 when a job failed (retried or given up), else 0."""
    states = {state(j) for j in jobs}
    return EXIT_ERROR if "error" in states else EXIT_FAILED if "failed" in states else EXIT_OK


def _where(job: Any) -> str:
    return f"{job.unit.model_key} x {job.unit.task_key} nshot={job.unit.nshot}"


def _more(n: int, what: str) -> list[str]:
    return [f"  ... and {n} more {what} (a dry run of the sweep, dry_run=true, lists every job with its note)"] if n > 0 else []


_JOB_ID = re.compile(r"SLURM job (\d+)(?:_\d+)?")
_ARRAY_NUM = re.compile(r"\b(scontrol release|scancel) \d+")
_LOG = re.compile(r" \(log: [^)]*\)")


def slurm_groups(jobs: list[Any]) -> tuple[list[str], list[str]]:
    """(array ids, one line per kind of SLURM note with its count and an example job), most frequent
    first: 10,000 pending jobs give a few lines, not 10,000."""
    groups: dict[str, list[Any]] = {}
    arrays: dict[str, None] = {}
    for j in jobs:
        detail = j.detail or ""
        m = _JOB_ID.search(detail)
        if m:
            arrays.setdefault(m.group(1))
        key = _LOG.sub("", _ARRAY_NUM.sub(r"\1 <array>", _JOB_ID.sub("SLURM job <id>", detail, count=1)))
        groups.setdefault(key, []).append(j)
    lines = []
    for key, js in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        first = js[0]
        m = _JOB_ID.search(first.detail or "")
        example = f"e.g. {m.group(0)}: {_where(first)}" if m else f"e.g. {_where(first)}"
        lines.append(f"  {len(js)} job{'s' if len(js) != 1 else ''}: {key}   ({example})")
    return list(arrays), lines


def status_text(jobs: list[Any], elapsed: float, root: Optional[Path] = None) -> str:
    """Counts per model x task setting, then individual lines only for failed and error jobs (at most
    :data:`SHOWN` each, "... and N more"), SLURM notes and stale reasons grouped with their counts."""
    by = counts(jobs)
    used = [s for s in STATES if any(c[s] for c in by.values())] or ["complete", "missing"]
    head = ["MODEL", "TASK"] + [s.upper() for s in used] + ["TOTAL"]
    rows = [[m, t] + [str(c[s]) for s in used] + [str(sum(c.values()))] for (m, t), c in by.items()]
    total: Counter = Counter()
    for c in by.values():
        total.update(c)
    rows.append(["all", ""] + [str(total[s]) for s in used] + [str(sum(total.values()))])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip() for r in [head] + rows]
    summary = ", ".join(f"{total[s]} {s}" for s in STATES if total[s])
    lines.append("")
    lines.append(f"{len(jobs)} jobs planned in {elapsed:.2f}s: {summary}." + (f" Results under {root}" if root else ""))
    by_state: dict[str, list[Any]] = {}
    for j in jobs:
        by_state.setdefault(state(j), []).append(j)
    failing = by_state.get("failed", [])
    if failing:
        lines.append(f"\nfailed ({len(failing)}):")
        for j in failing[:SHOWN]:  # failure.json is read only for the jobs shown
            err, log = last_failure(j)
            lines.append(f"  {_where(j)}: {err} (log: {log})"
                         + ("  [will be retried]" if j.status == RUN else "  [not relaunched: max_failures]"))
        lines += _more(len(failing) - SHOWN, "failed jobs")
    errors = by_state.get("error", [])
    if errors:
        lines.append(f"\nerror ({len(errors)}; the sweep launches nothing until they are fixed or left out):")
        for j in errors[:SHOWN]:
            lines.append(f"  {_where(j)}: {j.detail}")
        lines += _more(len(errors) - SHOWN, "error rows")
    stale = by_state.get("stale", [])
    if stale:
        reasons = Counter(j.detail for j in stale)
        lines.append(f"\nstale ({len(stale)}; override_completed=true re-runs them):")
        lines += [f"  {n} job{'s' if n != 1 else ''}: {why}" for why, n in reasons.most_common()]
    slurm = [j for j in jobs if state(j) in ("pending", "running") or "SLURM job" in (j.detail or "")]
    if slurm:
        arrays, groups = slurm_groups(slurm)
        shown = ", ".join(arrays[:8]) + (f" ... ({len(arrays)} arrays)" if len(arrays) > 8 else "")
        lines.append(f"\nSLURM ({len(slurm)} job{'s' if len(slurm) != 1 else ''} recorded" + (f"; arrays {shown}" if arrays else "") + "):")
        lines += groups[:SHOWN]
        lines += _more(len(groups) - SHOWN, "kinds of SLURM notes")
    return "\n".join(lines) + "\n"


def write_missing(path: Path, jobs: list[Any], config_dirs: Sequence[str], hydra_overrides: Sequence[str] = ()) -> str:
    """Write the jobs without a complete result (and not n/a) to the job list ``path``; returns the line
    that says so and how to run them."""
    import shlex

    from fewshot_eval.plan.job_list import KEY, hydra_value, job_row, write_job_list

    rows = [job_row(j, state(j), config_dirs) for j in jobs if state(j) not in ("complete", "n/a")]
    n = write_job_list(path, rows)
    if not n:
        return f"\nEvery job is complete (or n/a): wrote an empty job list to {path}."
    by = Counter(r["state"] for r in rows)
    states = ", ".join(f"{by[s]} {s}" for s in STATES if by[s])
    command = shlex.join(["fewshot-eval", "-m", f"{KEY}={hydra_value(str(path))}", *hydra_overrides])
    return f"\nWrote {n} job{'s' if n != 1 else ''} without a complete result ({states}) to {path}. Run them: {command}"

"""What SLURM says about submitted jobs: their states from ``squeue`` (queued and running jobs, with
pending reasons) and ``sacct`` (ended ones), asked for many jobs at once.

:meth:`SlurmStates.prefetch` asks about every array and job name a plan needs in ONE ``squeue`` and
ONE ``sacct`` call (per cluster; plus one of each by job name when interrupted submissions are to be
looked up), whatever the number of arrays or result dirs; later :meth:`~SlurmStates.state` and
:meth:`~SlurmStates.by_name` lookups are answered from those replies. A job not prefetched is asked
about alone (its array: one squeue and one sacct call). The commands run through
:mod:`fewshot_eval.launch.slurm.probes`: the first call to a daemon is a short probe, a daemon that
does not answer is down for the rest of the sweep.

Also the words for a state: pending reasons (``why_pending``), timeouts counted from the job's logs
(``timed_out``), the last error line of its stderr (``last_error_line``).
"""

from __future__ import annotations

import math
import re
import time
from typing import Iterable, Optional, Sequence

from fewshot_eval.launch.slurm.probes import Answer, SlurmUnreachable, down, run_many

__all__ = ["ACTIVE", "FAILED_STATES", "SlurmStates", "SlurmUnreachable", "why_pending", "timed_out", "last_error_line", "log_paths"]

# The job will still run (or is running): do not submit it again.
ACTIVE = frozenset({
    "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
    "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED", "RESV_DEL_HOLD",
})
# Terminal states that count as a failed attempt (a user's scancel does not).
FAILED_STATES = frozenset({"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})
CACHE_S = 10.0
# Pending reasons (squeue %r) of a job that will not start as it is: flagged in the plan.
NEVER = {
    "PartitionConfig": "the partition cannot give what it asks (nodes, GPUs, CPUs or account/QOS)",
    "ReqNodeNotAvail": "a required node is unavailable (down, drained or reserved)",
    "PartitionNodeLimit": "more nodes than the partition allows", "PartitionTimeLimit": "a longer time limit than the partition allows",
    "BadConstraints": "its constraints match no node", "InvalidAccount": "invalid account", "InvalidQOS": "invalid QOS",
    "DependencyNeverSatisfied": "its dependency can never be satisfied",
}
HELD = ("JobHeldUser", "JobHeldAdmin")
IDS_PER_CALL = 5000  # longer id lists are asked in several calls (argument length), still not one per array
NAME_WINDOW = "now-30days"  # sacct looks this far back for jobs by name


def _expand(job_id: str) -> list[str]:
    """``12_[1-3,5%2]`` -> 12_1 12_2 12_3 12_5 (squeue/sacct rows of array remainders); other ids as they are."""
    if "[" not in job_id:
        return [job_id]
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


class SlurmStates:
    """Job states by id (per array) and by job name, fetched in batches; see the module docstring.
    ``ttl_s``: how long an answer is used (a plan uses ``math.inf``: one query for the whole plan)."""

    def __init__(self, ttl_s: float = CACHE_S) -> None:
        self.ttl_s = ttl_s
        self._arrays: dict[str, tuple[float, Optional[dict[str, str]], str]] = {}  # "<cluster>/<array>" -> (time, states or None, why)
        self._names: dict[str, tuple[float, Optional[dict[str, str]], str]] = {}  # "<cluster>/<job name>" -> (time, states, why)
        self.reasons: dict[str, str] = {}  # job id -> squeue's pending reason

    @property
    def down(self) -> dict[str, str]:
        """The tools whose daemon is taken as down in this sweep, with why."""
        return {t: why for t in ("squeue", "sacct") if (why := down(t)) is not None}

    def _fresh(self, hit: Optional[tuple[float, Optional[dict[str, str]], str]]) -> bool:
        return hit is not None and (math.isinf(self.ttl_s) or time.monotonic() - hit[0] <= self.ttl_s)

    def prefetch(self, ids: Iterable[tuple[Optional[str], str]] = (), names: Iterable[tuple[Optional[str], str]] = ()) -> None:
        """Ask about these job ids (``(cluster, id)``; their whole arrays) and job names (``(cluster, name)``) at once."""
        by_cluster: dict[Optional[str], tuple[list[str], list[str]]] = {}
        for cluster, job_id in ids:
            array = str(job_id).split("_")[0]
            if array and not self._fresh(self._arrays.get(f"{cluster or ''}/{array}")):
                by_cluster.setdefault(cluster, ([], []))[0].append(array)
        for cluster, name in names:
            if name and not self._fresh(self._names.get(f"{cluster or ''}/{name}")):
                by_cluster.setdefault(cluster, ([], []))[1].append(name)
        for cluster, (arrays, wanted) in by_cluster.items():
            self._ask(cluster, sorted(set(arrays)), sorted(set(wanted)))

    def _ask(self, cluster: Optional[str], arrays: list[str], names: list[str]) -> None:
        m = ["-M", cluster] if cluster else []
        cmds: dict[str, list[str]] = {}
        for k in range(0, len(arrays), IDS_PER_CALL):
            part = ",".join(arrays[k:k + IDS_PER_CALL])
            cmds[f"squeue ids {k}"] = ["squeue", *m, "-h", "-r", "-j", part, "-o", "%i|%T|%r|%j"]
            cmds[f"sacct ids {k}"] = ["sacct", *m, "-n", "-X", "-P", "-j", part, "-o", "JobID,State,JobName"]
        for k in range(0, len(names), IDS_PER_CALL):
            part = ",".join(names[k:k + IDS_PER_CALL])
            cmds[f"squeue names {k}"] = ["squeue", *m, "-h", "-r", "--name", part, "-o", "%i|%T|%r|%j"]
            cmds[f"sacct names {k}"] = ["sacct", *m, "-n", "-X", "-P", "--name", part, "-S", NAME_WINDOW, "-o", "JobID,State,JobName"]
        answers = run_many(cmds)
        now = time.monotonic()
        by_array: dict[str, dict[str, str]] = {a: {} for a in arrays}
        by_name: dict[str, dict[str, str]] = {n: {} for n in names}
        for kind in ("squeue", "sacct"):  # squeue first: a live job's state wins over accounting's
            for key, ans in answers.items():
                if key.startswith(kind) and ans.ok:
                    self._parse(kind, ans, by_array, by_name)
        for what, keys, table, got in (("ids", arrays, self._arrays, by_array), ("names", names, self._names, by_name)):
            replies = [ans for key, ans in answers.items() if f" {what} " in key]
            answered = any(a.ok for a in replies)
            why = next((a.why for a in replies if not a.ok), "")
            for k in keys:
                table[f"{cluster or ''}/{k}"] = (now, got[k] if answered else None, why)

    def _parse(self, kind: str, ans: Answer, by_array: dict[str, dict[str, str]], by_name: dict[str, dict[str, str]]) -> None:
        for line in ans.out.splitlines():
            parts = [p.strip() for p in line.strip().split("|")]  # squeue: id|state|reason|name, sacct: id|state|name
            if len(parts) < 2:  # "CLUSTER: name" (with -M)
                continue
            jid, st = parts[0], parts[1]
            st = st.split()[0] if st.split() else "UNKNOWN"  # "CANCELLED by 0"
            reason = parts[2] if kind == "squeue" and len(parts) > 2 else ""
            name = parts[3 if kind == "squeue" else 2] if len(parts) > (3 if kind == "squeue" else 2) else ""
            for j in _expand(jid):
                array = j.split("_")[0]
                by_array.setdefault(array, {}).setdefault(j, st)
                if name in by_name:
                    by_name[name].setdefault(j, st)
                if reason and reason != "None":
                    self.reasons[j] = reason.split(",")[0]

    def state(self, job_id: str, cluster: Optional[str] = None) -> Optional[str]:
        """``RUNNING``, ``CANCELLED`` ... or None when SLURM does not know the job; raises SlurmUnreachable.
        ``cluster`` (the marker's): the job is asked of that cluster (``-M``), never taken for a job of another."""
        array = job_id.split("_")[0]
        key = f"{cluster or ''}/{array}"
        if not self._fresh(self._arrays.get(key)):
            self._ask(cluster, [array], [])
        _, states, why = self._arrays[key]
        if states is None:
            raise SlurmUnreachable(why)
        # tasks of an array cancelled before any of them started have one record: the array's ("39")
        return states.get(job_id) or states.get(array)

    def by_name(self, name: str, cluster: Optional[str] = None) -> dict[str, str]:
        """Job states of every job (array task) called ``name``: what a sweep killed right after sbatch left."""
        key = f"{cluster or ''}/{name}"
        if not self._fresh(self._names.get(key)):
            self._ask(cluster, [], [name])
        _, states, why = self._names[key]
        if states is None:
            raise SlurmUnreachable(why)
        for j in states:  # their arrays are known now too
            akey = f"{cluster or ''}/{j.split('_')[0]}"
            if not self._fresh(self._arrays.get(akey)):
                self._arrays[akey] = (time.monotonic(), {k: v for k, v in states.items() if k.split("_")[0] == j.split("_")[0]}, "")
        return dict(states)


def why_pending(states: SlurmStates, job_id: str, state: str) -> str:
    """`` (Priority)``, `` (held: release it with scontrol release 12)``, `` — will never start: ...``."""
    reason = states.reasons.get(job_id) or states.reasons.get(job_id.split("_")[0]) if state == "PENDING" else None
    if not reason:
        return ""
    base = reason.split("(")[0].strip()
    if base in NEVER:
        return (f" ({reason}) — will never start: {NEVER[base]}; scancel {job_id.split('_')[0]} and fix the model's "
                f"resources or hydra.launcher options")
    if base in HELD:
        return f" (held: {reason}; scontrol release {job_id.split('_')[0]} starts it)"
    return f" ({reason})"

def log_paths(folder: str, job_id: str) -> tuple[Optional[str], Optional[str]]:
    """(stdout, stderr) of a job submitted with submitit into ``folder`` (None, None when unknown)."""
    if not folder:
        return None, None
    try:
        from submitit.core.utils import JobPaths

        paths = JobPaths(folder, job_id=job_id, task_id=0)
        return str(paths.stdout), str(paths.stderr)
    except Exception:  # noqa: BLE001 - only for the note
        return None, None


TAIL_BYTES = 256 * 1024
GAVE_UP = ("Job not requeued because: timed-out too many times", "Job not requeued because: timed-out and not checkpointable")


def _tail(path: Optional[str]) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def timed_out(state: str, logs: Sequence[Optional[str]]) -> int:
    """How many times a job that ended for good timed out (0: it did not end by timing out). submitit requeues a
    timed-out job up to max_num_timeout times; then the job ends FAILED with 'timed-out too many times' in its log."""
    texts = [_tail(p) for p in dict.fromkeys(x for x in logs if x)]
    if state != "TIMEOUT" and not any(g in t for t in texts for g in GAVE_UP):
        return 0
    # each signal is logged by submitit's handler and again through the root logger, to .out and .err: count times
    stamps = {m.group(1) or m.group(2) for t in texts for m in _TIMED_OUT_RE.finditer(t)}
    return max(1, len(stamps))


_TIMED_OUT_RE = re.compile(r"(?:\((\d{4}-[^)]*)\)|\[(\d{4}-[^\]]*)\]\[submitit\]\[WARNING\]) - Caught signal \S+ on \S+: this job is timed-out")


_ERROR_RE = re.compile(r"^(?:[\w.]+(?:Error|Exception|Interrupt|Exit)|error|slurmstepd: error)\b.*", re.I)


def last_error_line(path: Optional[str]) -> Optional[str]:
    """The last exception line of a job's stderr log (``OSError: no weights at /w``), if any."""
    found = None
    for line in _tail(path).splitlines():
        line = line.strip()
        if _ERROR_RE.match(line) and not line.startswith("submitit"):
            found = line
    if found and len(found) > 200:
        found = found[:197] + "..."
    return found

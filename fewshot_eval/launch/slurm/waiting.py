"""After submission: the summary printed for the user (pools, job ids, where the logs are, how to
watch and collect), and -- with ``hydra.launcher.wait=true`` -- waiting for every job to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn, JobStatus

from fewshot_eval.launch.returns import failed_return
from fewshot_eval.launch.slurm.pools import Pool, max_array_size, pool_resources, throttle
from fewshot_eval.outcome import Outcome
from fewshot_eval.store.status import COMPLETE, result_status


def wait_for(owner: dict[int, Any], planned: Sequence[Any], job_overrides: Sequence[Sequence[str]]) -> dict[int, JobReturn]:
    """Each job's JobReturn once its SLURM job has ended (a combined job answers for all its jobs)."""
    out: dict[int, JobReturn] = {}
    done: dict[str, Any] = {}
    for i, job in owner.items():
        if job.job_id not in done:
            try:
                done[job.job_id] = job.results()[0]
            except Exception as e:  # noqa: BLE001 - failed, cancelled, timed out: reported per job
                done[job.job_id] = RuntimeError(f"SLURM job {job.job_id}: {error_line(e)} (log: {job.paths.stderr})")
        res = done[job.job_id]
        if isinstance(res, list):  # combined: one JobReturn per job, in submission order
            members = [k for k, j in owner.items() if j is job]
            res = res[members.index(i)]
        if isinstance(res, Exception):
            u = planned[i].unit
            if result_status(u.result_dir, u.fingerprint, u.all_trials).state == COMPLETE:  # its part of a combined job went well
                res = JobReturn(overrides=list(job_overrides[i]), status=JobStatus.COMPLETED)
                res.return_value = {"status": Outcome.RAN.value, "result_dir": str(u.result_dir)}
            else:
                res = failed_return(job_overrides[i], res)
        out[i] = res
    return out


def error_line(e: BaseException) -> str:
    """The informative line of a submitit error: the job's own exception (last line of the shipped
    traceback, between the ``----`` rulers) or the first line (not started, cancelled, timed out)."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    rulers = [i for i, ln in enumerate(lines) if set(ln.strip()) == {"-"}]
    if len(rulers) >= 2 and rulers[1] > 0:
        return lines[rulers[1] - 1].strip()
    return lines[0].strip() if lines else type(e).__name__


def pool_line(params: dict[str, Any], pool: Pool, jobs: Sequence[Any]) -> str:
    r = pool_resources(params, pool)
    ids = sorted({str(j.job_id) for j in jobs}, key=lambda s: [int(x) for x in s.split("_")])
    if pool.combine:
        what = f"1 SLURM job running its {len(pool.members)} jobs one after the other (combine_tasks)"
    elif len(ids) == 1:
        what = "1 job"
    else:
        arrays = list(dict.fromkeys(i.split("_")[0] for i in ids))
        at_most = f"at most {min(throttle(params, pool), len(ids))} at once"
        if len(arrays) == 1:
            what = f"array {arrays[0]}: {len(ids)} tasks, {at_most}"
        else:
            what = f"arrays {', '.join(arrays)}: {len(ids)} tasks in {len(arrays)} arrays of at most {max_array_size()} (MaxArraySize), {at_most} each"
    mem = f", {r['mem_gb']} GB" if r["mem_gb"] else ""
    res = f"{r['nodes']} node x {r['tasks_per_node']} task x {r['cpus_per_task']} cpu, {r['gpus_per_node'] or 0} gpu{mem}, {r['timeout_min']} min"
    shown = ", ".join(ids) if len(ids) <= 4 else f"{ids[0]} .. {ids[-1]}"
    return f"  pool {pool.name}: {what} ({res}) -> SLURM job {shown}"


def summary(lines: list[str], owner: dict[int, Any], logs: Path, params: dict[str, Any]) -> str:
    arrays = sorted({str(j.job_id).split("_")[0] for j in owner.values()}, key=int)
    ids = ",".join(arrays)
    out = [f"fewshot-eval: submitted {len(owner)} job{'s' if len(owner) != 1 else ''} to SLURM in {len(lines)} pool{'s' if len(lines) != 1 else ''}:"] + lines
    if owner:
        out += [
            f"  logs:    {logs.absolute()}/<job id>/<job id>_0_log.out|.err (each result dir's submitted.json names its own)",
            f"  watch:   squeue -j {ids}    |    sacct -X -j {ids} -o JobID,State,Elapsed,ExitCode",
            "  collect: re-run the same command: complete results are skipped, queued/running ones stay pending, "
            "failed or cancelled ones are submitted again (add dry_run=true to see their SLURM states).",
        ]
        if params.get("wait"):
            out.append("  waiting for them (Ctrl-C stops waiting; the jobs keep running) ...")
    return "\n".join(out)

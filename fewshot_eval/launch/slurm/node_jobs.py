"""What runs on the node: one array task's payload (:class:`PoolCall`), one SLURM job that runs several
jobs of a model setting (:class:`CombinedJobs`), and tasks of rank > 0 that leave the work to rank 0.

These classes are pickled into every submitted job (by reference: ``fewshot_eval.launch.slurm.node_jobs.PoolCall``);
``fewshot_eval/launch/slurm/__init__.py`` keeps their old names importable for jobs queued by 0.2.0.
A SLURM job of several tasks (``resources.tasks_per_node`` > 1 or ``nodes`` > 1) runs one
evaluation: submitit starts the payload in every task, and only rank 0 runs it (:func:`task_rank`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn, JobStatus

from fewshot_eval.launch.returns import failed_return
from fewshot_eval.outcome import Outcome

log = logging.getLogger("fewshot_eval")


def task_rank() -> tuple[int, int]:
    """(global rank, number of tasks) of this process in its submitit job; (0, 1) outside one."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        return env.global_rank, env.num_tasks
    except RuntimeError:  # not in a submitit job
        return 0, 1


def follower_return(overrides: Sequence[str], rank: int, ntasks: int, say: bool = True) -> JobReturn:
    """What a task of rank > 0 returns without running anything: rank 0 evaluates and writes."""
    if say:
        print(f"fewshot-eval: task rank {rank} of {ntasks}: rank 0 runs this job and writes its results; "
              f"this task does nothing and exits", flush=True)
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = {"status": Outcome.SKIPPED.value, "reason": f"task rank {rank}: rank 0 runs it"}
    return ret


class CombinedJobs:
    """One SLURM job that runs several jobs of one model setting in one process, one after the other.

    Each job still writes its own result dir and skips itself when complete. The SLURM job fails
    (after running all of them) when one of them failed, so the next sweep resubmits those."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def __call__(self, overrides: list[list[str]], job_dir_key: str, job_nums: list[int], singleton_state: Any) -> list[JobReturn]:
        rank, ntasks = task_rank()
        if rank:
            return [follower_return(o, rank, ntasks, say=k == 0) for k, o in enumerate(overrides)]
        returns, failed = [], []
        for ovr, num in zip(overrides, job_nums):
            try:
                ret = self.launcher(ovr, job_dir_key, num, f"job_id_for_{num}", singleton_state)
            except Exception as e:  # noqa: BLE001 - the others still run
                log.exception("job %d of a combined SLURM job failed (%s)", num, " ".join(ovr))
                ret = failed_return(ovr, e)
                failed.append((num, e))
            returns.append(ret)
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(overrides)} combined jobs failed: " + "; ".join(f"job {n}: {e}" for n, e in failed))
        return returns

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue after timeout/preemption with the same jobs; the finished ones skip themselves."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class PoolCall:
    """One array task's payload: its overrides and job number, plus the path of the pool's shared pickle
    (the launcher and Hydra's singleton state, written once per pool: ``.submitit/<pool>/pool.pkl``).
    Shipping the launcher and the state with every task cost ~53 KB per job (5,000 jobs: 265 MB)."""

    _loaded: dict[str, Any] = {}

    def __init__(self, shared: str) -> None:
        self.shared = shared

    def __call__(self, overrides: list[str], job_dir_key: str, job_num: int, job_id: str) -> Any:
        rank, ntasks = task_rank()
        if rank:
            return follower_return(overrides, rank, ntasks)
        if self.shared not in PoolCall._loaded:
            import pickle

            with open(self.shared, "rb") as f:
                PoolCall._loaded[self.shared] = pickle.load(f)
        launcher, state = PoolCall._loaded[self.shared]
        return launcher(overrides, job_dir_key, job_num, job_id, state)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue after timeout/preemption with the same arguments; finished trials skip themselves."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def write_shared(base: Path, launcher: Any, state: Any) -> Path:
    import cloudpickle

    from fewshot_eval.store.atomic import write_bytes

    path = base / "pool.pkl"
    write_bytes(path, cloudpickle.dumps((launcher, state)))
    return path

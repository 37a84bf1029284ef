"""submitit's SlurmExecutor for one job array whose every file exists before ``sbatch`` is called.

submitit names a task's pickled call and its log folder after the job id, so they can only be put in
place after sbatch has answered: a sweep killed in between leaves queued tasks whose call never
appears (and whose log folder does not exist, so SLURM cannot even open their output). Here each
array gets its own folder, named before submission (``.submitit/<pool>/<token>-<n>/``), holding:

* ``tasks.pkl`` -- every task's pickled call (submitit's ``DelayedSubmission``), written before sbatch;
* the logs ``<job id>_<task>_log.out|.err`` and results, as submitit names them, in that same folder.

A task starts with ``python -m fewshot_eval.launch.slurm.node_start <folder>``, which puts its own call
into place as submitit's ``<job id>_submitted.pkl`` and hands over to submitit. sbatch runs with a
bounded time (:mod:`fewshot_eval.launch.slurm.probes`): a controller that does not answer raises
``SlurmUnreachable``; a refusal (bad partition, too many jobs ...) raises :class:`SbatchRefused`.
"""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path
from typing import Any, Optional

from submitit.core import core, utils
from submitit.slurm.slurm import SlurmExecutor, SlurmJob

from fewshot_eval.launch.slurm.probes import SUBMIT_S, SlurmUnreachable, run
from fewshot_eval.store.atomic import write_bytes

STAGED = "tasks.pkl"


class SbatchRefused(RuntimeError):
    """sbatch answered with an error (its last line is the message)."""


def native_parameters(folder: str, auto_parameters: dict[str, Any], max_num_timeout: int) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` arguments (``timeout_min``, ``slurm_partition`` ...) checked and
    translated into sbatch's names, as submitit's AutoExecutor does; raises on a bad option."""
    import submitit

    auto = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=max_num_timeout)
    auto.update_parameters(**auto_parameters)
    return dict(auto.parameters)  # the SlurmExecutor's own parameters


class StagedSlurmExecutor(SlurmExecutor):
    """One array (or one job) in ``folder`` (no ``%j``); see the module docstring."""

    def __init__(self, folder: Path, parameters: dict[str, Any], max_num_timeout: int = 3, python: Optional[str] = None) -> None:
        super().__init__(folder, max_num_timeout=max_num_timeout, python=python)
        self.update_parameters(**parameters)

    @property
    def _submitit_command_str(self) -> str:
        return " ".join([self.python, "-u -m fewshot_eval.launch.slurm.node_start", shlex.quote(str(self.folder))])

    def _internal_process_submissions(self, delayed_submissions: list[utils.DelayedSubmission]) -> list[core.Job[Any]]:
        import cloudpickle

        folder = Path(self.folder)
        timeout_min = self.parameters.get("time", 5)
        for d in delayed_submissions:
            d.set_timeout(timeout_min, self.max_num_timeout)
        # what every task needs at its start, before sbatch (not fsynced: the pool record is the durable intent)
        write_bytes(folder / STAGED, cloudpickle.dumps(list(delayed_submissions)), durable=False)
        if len(delayed_submissions) == 1:
            return [self._submit_command(self._submitit_command_str)]
        saved = dict(self.parameters)
        self.parameters["map_count"] = len(delayed_submissions)
        try:
            first = self._submit_command(self._submitit_command_str)
        finally:
            self.parameters = saved
        tasks = list(range(first.num_tasks))
        return [SlurmJob(folder=self.folder, job_id=f"{first.job_id}_{a}", tasks=tasks) for a in range(len(delayed_submissions))]

    def _submit_command(self, command: str) -> core.Job[Any]:
        """sbatch the script (in the array's folder), with a bounded time."""
        uid = uuid.uuid4().hex
        script = Path(self.folder) / f".submission_file_{uid}.sh"
        script.write_text(self._make_submission_file_text(command, uid))
        ans = run(self._make_submission_command(script), answered_limit=SUBMIT_S, warn=False)
        if not ans.ok:
            script.unlink(missing_ok=True)
            raise (SlurmUnreachable if ans.unreachable else SbatchRefused)(ans.why)
        job_id = self._get_job_id_from_submission_command(ans.out)
        job: core.Job[Any] = self.job_class(folder=self.folder, job_id=job_id, tasks=list(range(self._num_tasks())))
        script.rename(job.paths.submission_file)
        return job

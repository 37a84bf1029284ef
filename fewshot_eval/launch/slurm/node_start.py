"""What a SLURM task of fewshot-eval runs first: ``python -u -m fewshot_eval.launch.slurm.node_start <folder>``.

The launcher wrote every task's pickled call into ``<folder>/tasks.pkl`` before sbatch
(:mod:`fewshot_eval.launch.slurm.staged_executor`). This puts this task's own (by
``SLURM_ARRAY_TASK_ID``; 0 for a single job) into place as submitit's ``<job id>_submitted.pkl`` --
unless it is there already: a task requeued after a timeout finds its checkpoint there -- and hands
over to submitit, which runs it and writes its result.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path


def main(folder: str) -> None:
    import submitit
    from submitit.core.submission import process_job

    from fewshot_eval.launch.slurm.staged_executor import STAGED

    os.environ["SUBMITIT_FOLDER"] = folder
    target = submitit.JobEnvironment().paths.submitted_pickle
    if not target.exists():
        with open(Path(folder) / STAGED, "rb") as f:
            calls = pickle.load(f)
        call = calls[int(os.environ.get("SLURM_ARRAY_TASK_ID") or 0)]
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        call.dump(tmp)
        os.replace(tmp, target)  # the tasks of a multi-task job race here: each writes the same call
    process_job(folder)


if __name__ == "__main__":
    main(sys.argv[-1])

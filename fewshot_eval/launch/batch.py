"""The sweeper -> launcher hand-off: what a fewshot-eval launcher receives besides override lists.

Hydra's ``Launcher.launch(job_overrides, initial_job_idx)`` knows nothing of result dirs, model
pools or the planner. fewshot-eval's launchers also implement :class:`BatchLauncher`; the
sweeper hands them one :class:`LaunchBatch`. Any other Hydra launcher (``submitit_local``, a
third-party one) gets the plain ``launch`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence, runtime_checkable

from hydra.core.utils import JobReturn

from fewshot_eval.plan.planner import PlannedJob


@dataclass
class LaunchBatch:
    """The jobs the planner kept, in launch order, with everything a launcher may need."""

    jobs: list[PlannedJob]
    overrides: list[list[str]]  # per job: the overrides it runs with (Hydra syntax)
    output_root: Path  # <output_dir>, absolute
    planner: Any  # fewshot_eval.plan.planner.Planner: composes job configs cheaply (job_config)
    max_parallel: Optional[int] = None  # the run param max_parallel (overrides every model's), or None

    def pool_limit(self, i: int) -> int:
        """How many jobs of job ``i``'s model pool may run at once."""
        return int(self.max_parallel) if self.max_parallel else int(self.jobs[i].unit.model["max_parallel"])


@runtime_checkable
class BatchLauncher(Protocol):
    """A launcher that takes a whole planned batch (fewshot-eval's local, local_parallel and SLURM ones)."""

    def launch_batch(self, batch: LaunchBatch) -> Sequence[JobReturn]: ...


def is_local_launcher(launcher_cfg: Any) -> bool:
    """Does ``hydra.launcher`` run jobs on this machine (not SLURM)? Unresolvable SLURM markers are
    then ignored instead of counted as pending."""
    return "slurm" not in str(launcher_cfg.get("_target_", "")).lower()

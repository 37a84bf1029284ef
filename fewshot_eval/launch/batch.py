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
    site: Optional[dict[str, Any]] = None  # the options of the sweep's site profile (launch/slurm/site_profiles.py), or None

    def pool_limit(self, i: int) -> int:
        """How many jobs of job ``i``'s model pool may run at once."""
        return int(self.max_parallel) if self.max_parallel else int(self.jobs[i].unit.model["max_parallel"])


@runtime_checkable
class BatchLauncher(Protocol):
    """A launcher that takes a whole planned batch (fewshot-eval's local, local_parallel and SLURM ones)."""

    def launch_batch(self, batch: LaunchBatch) -> Sequence[JobReturn]: ...


def runs_locally(launcher: Any) -> bool:
    """Does ``launcher`` (a Hydra launcher, or its class) run the jobs on this machine?

    Each of fewshot-eval's launchers says so in its class attribute ``runs_locally``. The planner
    then ignores a SLURM record (``submitted.json``) that SLURM cannot be asked about, instead of
    counting the job as pending, and does not check models' SLURM time limits. A launcher without
    the attribute (Hydra's ``basic``, ``submitit_local``, a third-party one) counts as not local:
    such records keep their jobs pending and time limits are checked, as for SLURM."""
    return bool(getattr(launcher, "runs_locally", False))


def launcher_class(launcher_cfg: Any) -> Optional[type]:
    """The class ``hydra.launcher._target_`` names (None when it cannot be imported)."""
    from hydra.utils import get_class

    try:
        return get_class(str(launcher_cfg.get("_target_", "")))
    except Exception:  # noqa: BLE001 - an unknown launcher is reported by Hydra itself
        return None

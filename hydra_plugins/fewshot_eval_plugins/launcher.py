"""Local launchers (the logic lives in ``fewshot_eval.launch.local``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

if TYPE_CHECKING:
    from fewshot_eval.launch.batch import LaunchBatch


class LocalLauncher(Launcher):
    """Sequential, in process; a failed job does not stop the others."""

    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from fewshot_eval.launch.local import launch_sequential

        return launch_sequential(self.hydra_context, self.task_function, self.config, job_overrides, initial_job_idx)

    def launch_batch(self, batch: LaunchBatch) -> Sequence[JobReturn]:
        """The sweep's planned jobs; each job's config is composed cheaply by the planner."""
        from fewshot_eval.launch.joblog import log_launch
        from fewshot_eval.launch.local import launch_sequential

        for j in batch.jobs:
            log_launch(batch.output_root, j, type(self).__name__)
        return launch_sequential(self.hydra_context, self.task_function, self.config, batch.overrides, 0, batch.planner.job_config)


class LocalParallelLauncher(LocalLauncher):
    """Subprocesses, at most ``max_workers`` at once and each model's ``max_parallel`` per model pool."""

    def __init__(self, max_workers: int = 2) -> None:
        super().__init__()
        self.max_workers = max_workers

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from fewshot_eval.launch.local import launch_parallel

        return launch_parallel(self.config, [(list(o), "all", self.max_workers) for o in job_overrides], self.max_workers)

    def launch_batch(self, batch: LaunchBatch) -> Sequence[JobReturn]:
        """Per-model pools: each model's jobs run at most its max_parallel at once."""
        from fewshot_eval.launch.joblog import log_launch
        from fewshot_eval.launch.local import launch_parallel

        for j in batch.jobs:
            log_launch(batch.output_root, j, type(self).__name__)
        jobs = [(o, j.unit.model_key, batch.pool_limit(i)) for i, (o, j) in enumerate(zip(batch.overrides, batch.jobs))]
        return launch_parallel(self.config, jobs, self.max_workers)

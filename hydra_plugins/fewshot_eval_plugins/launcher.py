"""Local launchers (the logic lives in ``fewshot_eval.launch.local``)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class LocalLauncher(Launcher):
    """Sequential, in process; a failed job does not stop the others."""

    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None
        self.planner: Any = None  # set by the fewshot sweeper: composes job configs cheaply

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from fewshot_eval.launch.local import launch_sequential

        compose = self.planner.job_config if self.planner is not None else None
        return launch_sequential(self.hydra_context, self.task_function, self.config, job_overrides, initial_job_idx, compose)


class LocalParallelLauncher(LocalLauncher):
    """Subprocesses, at most ``max_workers`` at once and each model's ``max_parallel`` per model pool."""

    def __init__(self, max_workers: int = 2) -> None:
        super().__init__()
        self.max_workers = max_workers
        self.pools: Optional[list[tuple[str, int]]] = None  # set by the sweeper: (pool, limit) per job

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from fewshot_eval.launch.local import launch_parallel

        pools = self.pools or [("all", self.max_workers)] * len(job_overrides)
        jobs = [(list(o), p, lim) for o, (p, lim) in zip(job_overrides, pools)]
        return launch_parallel(self.config, jobs, self.max_workers)

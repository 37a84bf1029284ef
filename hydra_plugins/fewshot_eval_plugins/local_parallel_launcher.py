"""``hydra/launcher=local_parallel``: jobs as subprocesses on this machine, in per-model pools.

Like Hydra's own launchers it runs the task function and config it is given, in any Hydra app.

    python -m fewshot_eval -m models=demo tasks=demo hydra/launcher=local_parallel hydra.launcher.max_workers=4

At most ``max_workers`` jobs run at once, and each model's jobs at most its ``max_parallel`` at once.
The logic lives in ``fewshot_eval.launch.parallel``.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

if TYPE_CHECKING:
    from fewshot_eval.launch.batch import LaunchBatch


@dataclass
class LocalParallelLauncherConf:
    _target_: str = "hydra_plugins.fewshot_eval_plugins.local_parallel_launcher.LocalParallelLauncher"
    # Jobs running at once in all; each model's pool is further limited by its max_parallel.
    max_workers: int = 2


class LocalParallelLauncher(Launcher):
    """Subprocesses, at most ``max_workers`` at once and each model's ``max_parallel`` per model pool."""

    runs_locally = True  # the planner ignores SLURM records it cannot ask SLURM about (fewshot_eval.launch.batch)

    def __init__(self, max_workers: int = 2) -> None:
        self.max_workers = max_workers
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Hydra's launcher interface (any sweeper): one pool of ``max_workers``."""
        from fewshot_eval.launch.parallel import launch_parallel

        jobs = [(list(o), "all", self.max_workers) for o in job_overrides]
        return launch_parallel(self.hydra_context, self.task_function, self.config, jobs, self.max_workers, initial_job_idx)

    def launch_batch(self, batch: "LaunchBatch") -> Sequence[JobReturn]:
        """The fewshot sweeper's planned jobs: each model's jobs run at most its max_parallel at once."""
        from fewshot_eval.launch.parallel import launch_batch

        return launch_batch(self.hydra_context, self.task_function, self.config, batch, self.max_workers, type(self).__name__)


ConfigStore.instance().store(group="hydra/launcher", name="local_parallel", node=LocalParallelLauncherConf, provider="fewshot_eval")

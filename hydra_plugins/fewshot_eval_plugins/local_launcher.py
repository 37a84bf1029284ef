"""``hydra/launcher=local`` (fewshot-eval's default): every job in this process, one after the other.

    fewshot-eval -m model=random,majority task=copa_demo

The logic lives in ``fewshot_eval.launch.sequential``.
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
class LocalLauncherConf:
    _target_: str = "hydra_plugins.fewshot_eval_plugins.local_launcher.LocalLauncher"
    # the jobs' files are made durable (fsynced) together at most this often and when the sweep ends,
    # not at the end of each job; a power cut costs at most the jobs of the last interval (recomputed
    # on the next run). 0: each job's files are fsynced before it is reported finished
    fsync_every_s: float = 1.0


class LocalLauncher(Launcher):
    """Sequential, in process; a failed job does not stop the others."""

    runs_locally = True  # the planner ignores SLURM records it cannot ask SLURM about (fewshot_eval.launch.batch)

    def __init__(self, fsync_every_s: float = 1.0) -> None:
        self.fsync_every_s = fsync_every_s
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Hydra's launcher interface (any sweeper): each job's config composed by Hydra."""
        from fewshot_eval.launch.sequential import launch_sequential

        return launch_sequential(self.hydra_context, self.task_function, self.config, job_overrides, initial_job_idx,
                                 fsync_every_s=self.fsync_every_s)

    def launch_batch(self, batch: "LaunchBatch") -> Sequence[JobReturn]:
        """The fewshot sweeper's planned jobs; each job's config is composed cheaply by the planner."""
        from fewshot_eval.launch.sequential import launch_batch

        return launch_batch(self.hydra_context, self.task_function, self.config, batch, type(self).__name__, self.fsync_every_s)


ConfigStore.instance().store(group="hydra/launcher", name="local", node=LocalLauncherConf, provider="fewshot_eval")

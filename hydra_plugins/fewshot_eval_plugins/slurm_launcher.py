"""``hydra/launcher=submitit_slurm``: one submitit job array per model setting (logic in ``fewshot_eval.launch.slurm``).

    python -m fewshot_eval -m models=demo tasks=demo hydra/launcher=submitit_slurm hydra.launcher.partition=dev

``hydra/launcher=submitit_slurm`` selects ``conf/hydra/launcher/submitit_slurm.yaml`` (the
packaged config dir is searched before the ConfigStore, so it shadows hydra-submitit-launcher's
entry of that name). The yaml extends the typed schema registered here, ``fewshot_slurm_schema``.
The stock ConfigStore entry ``submitit_slurm`` is removed (by :class:`ShadowStockSlurmConfig`,
after every plugin module has been scanned): Hydra would otherwise validate the yaml against it
(deprecated "automatic schema matching": a warning on every run, and an error for the keys and
null resources added here). ``hydra/launcher=submitit_local`` stays stock.
"""

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.search_path_plugin import SearchPathPlugin
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

if TYPE_CHECKING:
    from fewshot_eval.launch.batch import LaunchBatch


@dataclass
class SlurmPoolLauncherConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.fewshot_eval_plugins.slurm_launcher.SlurmPoolLauncher"
    # Resources: null = each model setting's `resources`; a value applies to every pool.
    nodes: Optional[int] = None
    gpus_per_node: Optional[int] = None
    tasks_per_node: Optional[int] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[int] = None
    timeout_min: Optional[int] = None
    # SLURM job name of a pool: <name>-<model setting>
    name: str = "fewshot"
    # One folder per pool below it: <submitit_folder with %j replaced by <pool>/%j>
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"
    # Requeues after a timeout/preemption (finished trials are kept, so requeueing is safe)
    max_num_timeout: int = 3
    # Cap on every pool's array throttle; each pool runs at most its model's max_parallel
    # (or the run param max_parallel) tasks at once.
    array_parallelism: int = 256
    # E-mail on these events (sbatch --mail-type: NONE, BEGIN, END, FAIL, ALL, ...); null: no mail options
    mail_type: Optional[str] = "FAIL"
    mail_user: Optional[str] = None
    # false: submit, record, print a summary and exit (re-run the command to collect);
    # true: also wait until every job has ended and report ran/failed like the local launchers.
    wait: bool = False


class SlurmPoolLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher with per-model pools, submit-and-return and job records.

    Submitted jobs pickle this class by its path (``hydra_plugins.fewshot_eval_plugins.slurm_launcher.SlurmPoolLauncher``):
    keep it, or jobs queued before an upgrade cannot be unpickled on the node.

    On the submitting side the fewshot sweeper hands it a ``LaunchBatch`` (``launch_batch``);
    on the node submitit calls the inherited ``__call__`` (one job) or ``checkpoint`` (requeue
    after timeout/preemption).
    """

    runs_locally = False  # jobs run on the cluster: SLURM's records of them count (fewshot_eval.launch.batch)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from fewshot_eval.config import ConfigError

        raise ConfigError("hydra/launcher=submitit_slurm needs fewshot-eval's sweeper (hydra/sweeper=fewshot, the default).")

    def launch_batch(self, batch: "LaunchBatch") -> Sequence[JobReturn]:
        """One job array per model pool; see ``fewshot_eval.launch.slurm``."""
        from fewshot_eval.launch.slurm.submission import launch_pools

        return launch_pools(self, batch)

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """Run one job on the node; a failed job raises, so SLURM records it as FAILED."""
        from fewshot_eval.config import SWEEP_JOB_ENV

        os.environ[SWEEP_JOB_ENV] = "1"  # a job of a sweep, even if it was selected by a preset
        ret = super().__call__(*args, **kwargs)
        if ret.status == JobStatus.FAILED:
            ret.return_value  # noqa: B018 - raises the job's exception
        return ret


class ShadowStockSlurmConfig(SearchPathPlugin):
    """Drops hydra-submitit-launcher's ConfigStore ``submitit_slurm`` so that our yaml of that name is
    used as it is. Search path plugins run after all plugin modules were imported (Hydra re-executes
    each one while scanning, so removing the entry at import time here would not last)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        ConfigStore.instance().repo.get("hydra", {}).get("launcher", {}).pop("submitit_slurm.yaml", None)


cs = ConfigStore.instance()
cs.store(group="hydra/launcher", name="fewshot_slurm_schema", node=SlurmPoolLauncherConf, provider="fewshot_eval")

"""``hydra/launcher=submitit_slurm``: one submitit job array per model setting (logic in ``fewshot_eval.launch.slurm``).

    python -m fewshot_eval -m models=demo tasks=demo hydra/launcher=submitit_slurm hydra.launcher.partition=dev

In fewshot-eval's app ``hydra/launcher=submitit_slurm`` selects ``conf/hydra/launcher/submitit_slurm.yaml``
(the app's config dir is searched before the ConfigStore), which extends the typed config registered
here as ``fewshot_slurm``. Hydra would validate that yaml against hydra-submitit-launcher's ConfigStore
entry of the same name (deprecated "automatic schema matching": a warning on every run, and an error
for the keys and null resources added here), so :class:`StockSlurmConfigOutsideOurApp` takes that entry
out of the ConfigStore while fewshot-eval's config dir is the app's, and puts it back for any other
app: another Hydra app in the same environment keeps hydra-submitit-launcher's ``submitit_slurm``.
``hydra/launcher=submitit_local`` stays stock everywhere.

Any app may select ``hydra/launcher=fewshot_slurm``; with another sweeper than fewshot-eval's (no
planned pools), :meth:`SlurmPoolLauncher.launch` runs the jobs as hydra-submitit-launcher does.
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
    # minutes, or "auto": each job's time limit from the wall times of earlier results of its model
    timeout_min: Any = None
    # timeout_min=auto: limit = max(floor, estimate x factor + signal_delay_s + 60 s)
    auto_timeout_factor: float = 2.0
    auto_timeout_floor_min: int = 15
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
        """Hydra's launcher interface (any other sweeper): one job array, run and waited for as by
        hydra-submitit-launcher, with these options translated (``fewshot_eval.launch.slurm.pools.stock_params``)."""
        from fewshot_eval.launch.slurm.pools import stock_params

        stock = SlurmLauncher(**stock_params(self.params))
        stock.setup(hydra_context=self.hydra_context, task_function=self.task_function, config=self.config)  # type: ignore[arg-type]
        return stock.launch(job_overrides, initial_job_idx)

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


class StockSlurmConfigOutsideOurApp(SearchPathPlugin):
    """hydra-submitit-launcher's ConfigStore ``submitit_slurm``: out of the ConfigStore while the app
    is fewshot-eval (its packaged config dir is the primary one: our yaml of that name is used as it
    is), back in for any other app in the same process. Search path plugins run for every app, after
    all plugin modules were imported (removing the entry at import time would not last: Hydra
    re-executes each plugin module while scanning)."""

    stashed: dict[str, Any] = {}

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from fewshot_eval.config import conf_dir

        launchers = ConfigStore.instance().repo.setdefault("hydra", {}).setdefault("launcher", {})
        ours = str(conf_dir())
        if any(e.provider == "main" and e.path.removeprefix("file://").rstrip("/") == ours for e in search_path.get_path()):
            entry = launchers.pop("submitit_slurm.yaml", None)
            if entry is not None:
                self.stashed["submitit_slurm.yaml"] = entry
        elif "submitit_slurm.yaml" in self.stashed:
            launchers.setdefault("submitit_slurm.yaml", self.stashed.pop("submitit_slurm.yaml"))


ConfigStore.instance().store(group="hydra/launcher", name="fewshot_slurm", node=SlurmPoolLauncherConf, provider="fewshot_eval")

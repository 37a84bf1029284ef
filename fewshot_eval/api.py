"""Plan a sweep from Python, exactly as ``fewshot-eval -m ... dry_run=true`` would.

    from fewshot_eval.api import plan
    planner, jobs = plan(["models=demo", "tasks=demo", "nshot=0,2"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fewshot_eval.config import conf_dir
from fewshot_eval.plan.planner import PlannedJob, Planner, gc_paused


def plan(overrides: Sequence[str], config_dirs: Sequence[str | Path] = ()) -> tuple[Planner, list[PlannedJob]]:
    """The planner and planned jobs for command-line ``overrides`` (sweep syntax allowed);
    ``config_dirs`` as ``--config-dir``: searched before the packaged dir, the first one first.
    The sweep's site profile (``site=<name>``, or detected with the SLURM launcher) is ``planner.site``;
    its ``env`` is set while planning. Read-only, as a dry run: what the plan saw of SLURM is not written
    (``planner.commit()`` would)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from fewshot_eval.launch.batch import launcher_class, runs_locally
    from fewshot_eval.launch.slurm.pending_check import SchedulerView
    from fewshot_eval.launch.slurm.site_profiles import resolve_site, site_env
    from fewshot_eval.plan.expand import expand
    from fewshot_eval.plan.job_list import job_list_arguments
    from fewshot_eval.searchpath import checked_dirs, env_dirs, set_env_dirs

    common, config_dirs = job_list_arguments(overrides, [str(d) for d in config_dirs])  # job_list=<file>: the original sweep's base
    overrides = [*common, *overrides]
    hydra_ovr = [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    task_ovr = [o for o in overrides if o not in hydra_ovr]
    dirs = checked_dirs(config_dirs, packaged=conf_dir())  # a missing one: ConfigError
    saved = env_dirs()
    set_env_dirs(dirs)  # the search path exactly as the command line builds it (fewshot_eval.searchpath)
    try:
        search = create_config_search_path(str(conf_dir()))
    finally:
        set_env_dirs(saved)
    GlobalHydra.instance().clear()
    Hydra.create_main_hydra2(task_name="fewshot_eval", config_search_path=search)
    try:
        loader = GlobalHydra.instance().config_loader()
        cfg = loader.load_configuration("config", overrides=hydra_ovr + task_ovr, run_mode=RunMode.MULTIRUN)
        HydraConfig.instance().set_config(cfg)
        with gc_paused():
            combos = expand(cfg.hydra.sweeper.params, task_ovr, loader, cfg.hydra.runtime.choices)
        local = runs_locally(launcher_class(cfg.hydra.launcher))
        planner = Planner(cfg, loader, pending_check=SchedulerView(), local_launcher=local)
        planner.site = resolve_site(cfg, planner.search)
        with site_env(planner.site):  # the caches the site's jobs use
            return planner, planner.plan(combos)
    finally:
        GlobalHydra.instance().clear()

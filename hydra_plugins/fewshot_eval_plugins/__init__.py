"""Hydra plugins of fewshot-eval, found by Hydra's plugin discovery. One module per plugin, each
holding its config dataclass (registered in the ConfigStore) and its small class; the logic lives in
``fewshot_eval.launch`` (launchers) and ``fewshot_eval.plan`` (the sweeper's planning).

    hydra/sweeper=fewshot            sweeper.py                  plans the grid, skips what is done, launches the rest
    hydra/launcher=local             local_launcher.py           (default) sequential, in this process
    hydra/launcher=local_parallel    local_parallel_launcher.py  subprocesses in per-model pools
    hydra/launcher=submitit_slurm    slurm_launcher.py           one SLURM job array per model setting
    (search path)                    user_config_dirs.py         --config-dir dirs searched before the packaged one
    (ConfigStore)                    setting_schemas.py          the typed schemas of model and task settings
"""

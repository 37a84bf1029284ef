"""Configs of fewshot-eval's Hydra plugins, registered in the ConfigStore.

    hydra/sweeper=fewshot          (default) plans, skips what is done, then launches
    hydra/launcher=local           (default) sequential, in this process
    hydra/launcher=local_parallel  subprocesses, per-model pools limited by max_parallel
"""

from dataclasses import dataclass
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore

from fewshot_eval.settings import ModelSetting, TaskSetting


@dataclass
class FewshotSweeperConf:
    _target_: str = "hydra_plugins.fewshot_eval_plugins.sweeper.FewshotSweeper"
    # Sweep presets put their space here (model: "a,b", task: "x,y", nshot: "0,32").
    # Values must be sweep strings; a YAML list is rejected with a message.
    params: Optional[Dict[str, Any]] = None


@dataclass
class LocalLauncherConf:
    _target_: str = "hydra_plugins.fewshot_eval_plugins.launcher.LocalLauncher"


@dataclass
class LocalParallelLauncherConf:
    _target_: str = "hydra_plugins.fewshot_eval_plugins.launcher.LocalParallelLauncher"
    # Jobs running at once in all; each model's pool is further limited by its max_parallel.
    max_workers: int = 2


cs = ConfigStore.instance()
# Schemas of model and task settings: conf/config.yaml puts them under every model/task file,
# so a file holds only what differs and a typo'd key fails at composition.
cs.store(name="model_schema", node=ModelSetting)
cs.store(name="task_schema", node=TaskSetting)
cs.store(group="hydra/sweeper", name="fewshot", node=FewshotSweeperConf, provider="fewshot_eval")
cs.store(group="hydra/launcher", name="local", node=LocalLauncherConf, provider="fewshot_eval")
cs.store(group="hydra/launcher", name="local_parallel", node=LocalParallelLauncherConf, provider="fewshot_eval")

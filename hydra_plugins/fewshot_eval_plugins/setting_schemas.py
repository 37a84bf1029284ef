"""The schemas of model and task settings in the ConfigStore: ``conf/config.yaml`` puts them under every
model/task file (``model_schema@model``), so a file holds only what differs and a typo'd key fails at
composition. The dataclasses live in ``fewshot_eval.settings``."""

from hydra.core.config_store import ConfigStore

from fewshot_eval.settings import ModelSetting, TaskSetting

cs = ConfigStore.instance()
cs.store(name="model_schema", node=ModelSetting)
cs.store(name="task_schema", node=TaskSetting)

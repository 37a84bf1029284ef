"""fewshot-eval: plan, launch and collect few-shot prompting evaluations with Hydra.

The path of one job through the package, stage by stage:
``plan`` (expand groups, skip what is done) -> ``launch`` (local / SLURM pools)
-> ``run`` (the job body) -> ``evaluate`` (backends, tasks, metrics, the lm-eval bridge)
-> ``store`` (result layout, atomic writes, status) -> ``report``.
"""

__version__ = "0.2.0"

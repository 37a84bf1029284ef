"""The Hydra application: ``python -m fewshot_eval [-m] key=value ...``."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from fewshot_eval.config import ConfigError, conf_dir

log = logging.getLogger("fewshot_eval")


def _task(cfg: DictConfig) -> object:
    from fewshot_eval.job import main

    return main(cfg)


def run_hydra() -> None:
    """Run the Hydra app with the packaged config dir; config errors exit 2 with a one-line message."""
    app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_task)
    try:
        app()
    except ConfigError as e:  # raised before Hydra's own handler in the sweeper / planning
        print(f"fewshot-eval: error: {e}", file=sys.stderr)
        sys.exit(2)

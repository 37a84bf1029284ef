"""The Hydra application: ``python -m fewshot_eval [-m] key=value ...``."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from fewshot_eval import progress
from fewshot_eval.config import ConfigError, conf_dir

log = logging.getLogger("fewshot_eval")


def _task(cfg: DictConfig) -> object:
    from fewshot_eval.job import main

    return main(cfg)


def run_hydra() -> None:
    """Run the Hydra app with the packaged config dir.

    Exit status: config errors 2 with a one-line message; Ctrl-C 130, SIGTERM 143, SIGHUP 129 with
    one line (finished results are kept). A sweep itself exits 1 when a job failed and 3 when some
    jobs were running elsewhere (see the sweeper).
    """
    if not progress.is_tty(sys.stderr):
        # no carriage-return progress bars of the HuggingFace libraries in logs (weights loading ...)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_task)
    try:
        with progress.signals_raise():
            app()
    except ConfigError as e:  # raised before Hydra's own handler in the sweeper / planning
        print(f"fewshot-eval: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:  # Hydra reports only Exception: Ctrl-C (and SIGTERM, see progress) arrive here as raised
        stop = e if isinstance(e, progress.Interrupted) else progress.Interrupted.of(e)
        progress.ignore_stop_signals()  # a second Ctrl-C must not turn the one line into a traceback
        sys.stdout.flush()
        print(stop.message(), file=sys.stderr)
        sys.exit(stop.exit_status)

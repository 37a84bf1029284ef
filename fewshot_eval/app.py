"""The Hydra application: ``python -m fewshot_eval [-m] key=value ...``."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import hydra
from omegaconf import DictConfig

from fewshot_eval import progress
from fewshot_eval.config import ConfigError, conf_dir

log = logging.getLogger("fewshot_eval")


def _task(cfg: DictConfig) -> object:
    from fewshot_eval.job import main

    return main(cfg)


class _ConfigExit(BaseException):
    """A ConfigError on its way past Hydra's error report (which catches Exception and exits 1)."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


@contextmanager
def _config_errors_pass_hydra() -> Iterator[None]:
    """Let a ConfigError raised in the sweeper (planning) or in a single run reach :func:`run_hydra`
    (exit status 2, one line) instead of Hydra's report (exit status 1). Jobs of a sweep still
    count a ConfigError as a failed job. ``HYDRA_FULL_ERROR=1`` keeps Hydra's full report."""
    from hydra._internal import utils as hydra_utils

    original: Callable[[Any], Any] | None = getattr(hydra_utils, "run_and_report", None)
    if original is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
        yield
        return

    def run_and_report(func: Any) -> Any:
        def guarded() -> Any:
            try:
                return func()
            except ConfigError as e:
                raise _ConfigExit(e) from None

        return original(guarded)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def run_hydra() -> None:
    """Run the Hydra app with the packaged config dir.

    Exit status: a configuration error 2, with a one-line message; Ctrl-C 130, SIGTERM 143,
    SIGHUP 129, with one line (finished results are kept). A sweep exits 1 when a job failed and
    3 when some jobs were running elsewhere (see the sweeper).
    """
    if not progress.is_tty(sys.stderr):
        # no carriage-return progress bars of the HuggingFace libraries in logs (weights loading ...)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_task)
    try:
        with progress.signals_raise(), _config_errors_pass_hydra():
            app()
    except (ConfigError, _ConfigExit) as e:
        print(f"fewshot-eval: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:  # Hydra reports only Exception: Ctrl-C (and SIGTERM, see progress) arrive here as raised
        stop = e if isinstance(e, progress.Interrupted) else progress.Interrupted.of(e)
        progress.ignore_stop_signals()  # a second Ctrl-C must not turn the one line into a traceback
        sys.stdout.flush()
        print(stop.message(), file=sys.stderr)
        sys.exit(stop.exit_status)

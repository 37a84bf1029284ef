"""The Hydra application: ``fewshot-eval [-m] key=value ...`` (or ``python -m fewshot_eval``).

The task function is the job body itself, ``fewshot_eval.run.job.main``; in a sweep (``-m``) the
fewshot sweeper plans and launches the jobs, and records how the sweep ended, which is the exit status.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra

from fewshot_eval import outcome, progress
from fewshot_eval.config import ConfigError, conf_dir
from fewshot_eval.hydra_errors import compact_user_errors, fail, quiet_log_write_errors

log = logging.getLogger("fewshot_eval")


def run_hydra() -> int:
    """Run the Hydra app with the packaged config dir, the user's ``--config-dir`` dirs searched
    first (see ``fewshot_eval.searchpath``); returns the exit status.

    Exit status: a configuration error 2, with a one-line message; Ctrl-C 130, SIGTERM 143,
    SIGHUP 129, with one line (finished results are kept). A sweep exits 1 when a job failed and
    3 when some jobs were running elsewhere (``fewshot_eval.outcome``): the sweeper records that
    status and returns, Hydra runs the callbacks' ``on_multirun_end``, then the app exits with it.
    """
    from fewshot_eval.plan.expand import group_list_error
    from fewshot_eval.run.job import main
    from fewshot_eval.searchpath import checked_dirs, set_env_dirs, take_config_dir_args

    outcome.set_sweep_status(None)
    try:
        argv, dirs = take_config_dir_args(sys.argv[1:])
        argv, dirs = with_job_list(argv, dirs)
        dirs = checked_dirs(dirs, packaged=conf_dir())
        set_env_dirs(dirs)  # read by the SearchPathPlugin
        message = group_list_error(argv, lambda group: _options(group, dirs))
        if message:  # model=[] would otherwise fail deep inside a job or the planner
            fail(message)
        sys.argv = sys.argv[:1] + argv
        if not progress.is_tty(sys.stderr):
            # no carriage-return progress bars of the HuggingFace libraries in logs (weights loading ...)
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        quiet_log_write_errors()  # a full disk: the jobs' log files lose lines, the terminal gets no tracebacks
        app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(main)
        with progress.signals_raise(), compact_user_errors():
            app()
    except ConfigError as e:  # raised outside Hydra's error handler (a missing --config-dir, ...)
        fail(str(e))
    except KeyboardInterrupt as e:  # Hydra reports only Exception: Ctrl-C (and SIGTERM, see progress) arrive here as raised
        progress.ignore_stop_signals()  # a second Ctrl-C must not turn the one line into a traceback
        stopped = outcome.sweep_status()
        if stopped is not None and stopped >= 128:  # the sweep said so already; a signal during the callbacks
            return stopped
        stop = e if isinstance(e, progress.Interrupted) else progress.Interrupted.of(e)
        sys.stdout.flush()
        print(stop.message(), file=sys.stderr)
        return stop.exit_status
    return outcome.sweep_status() or 0


def with_job_list(argv: list[str], dirs: list[str]) -> tuple[list[str], list[str]]:
    """``job_list=<file>`` (``fewshot_eval.plan.job_list``): the overrides all its jobs share go in just
    before it, its config dirs after the command line's, so that Hydra composes the original sweep's base
    config; the sweeper then plans the list's rows. Needs -m."""
    from fewshot_eval.plan.job_list import KEY, given, job_list_arguments

    path = given(argv)
    if path is None:
        return argv, dirs
    if not any(a in ("-m", "--multirun") for a in argv):
        raise ConfigError(f"{KEY}={path} runs the jobs of a list: add -m (fewshot-eval -m {KEY}={path} ...).")
    common, dirs = job_list_arguments(argv, dirs)
    at = max(i for i, a in enumerate(argv) if a.split("=", 1)[0].lstrip("+~") == KEY)
    return argv[:at] + common + argv[at:], dirs


def _options(group: str, dirs: list[str]) -> list[str]:
    from pathlib import Path

    found = {p.stem for d in [*map(Path, dirs), conf_dir()] for p in (d / group).glob("*.yaml")}
    return sorted(n for n in found if not n.startswith("_"))

"""The Hydra application: ``python -m fewshot_eval [-m] key=value ...``."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Callable, Iterator, Optional

import hydra
from omegaconf import DictConfig

from fewshot_eval import progress
from fewshot_eval.config import ConfigError, conf_dir

log = logging.getLogger("fewshot_eval")

PRESET_AND_SETTING_GROUPS = ("model", "task", "models", "tasks", "experiment", "task_def")


def _task(cfg: DictConfig) -> object:
    from fewshot_eval.run.job import main

    return main(cfg)


def run_hydra() -> None:
    """Run the Hydra app with the packaged config dir, the user's ``--config-dir`` dirs searched
    first (see ``fewshot_eval.searchpath``).

    Exit status: a configuration error 2, with a one-line message; Ctrl-C 130, SIGTERM 143,
    SIGHUP 129, with one line (finished results are kept). A sweep exits 1 when a job failed and
    3 when some jobs were running elsewhere (see the sweeper).
    """
    from fewshot_eval.plan.expand import group_list_error
    from fewshot_eval.searchpath import checked_dirs, set_env_dirs, take_config_dir_args

    try:
        argv, dirs = take_config_dir_args(sys.argv[1:])
        dirs = checked_dirs(dirs, packaged=conf_dir())
        set_env_dirs(dirs)  # read by the SearchPathPlugin
        message = group_list_error(argv, lambda group: _options(group, dirs))
        if message:  # model=[] would otherwise fail deep inside a job or the planner
            _fail(message)
        sys.argv = sys.argv[:1] + argv
        if not progress.is_tty(sys.stderr):
            # no carriage-return progress bars of the HuggingFace libraries in logs (weights loading ...)
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_task)
        with progress.signals_raise(), _compact_user_errors():
            app()
    except ConfigError as e:  # raised outside Hydra's error handler (a missing --config-dir, ...)
        _fail(str(e))
    except KeyboardInterrupt as e:  # Hydra reports only Exception: Ctrl-C (and SIGTERM, see progress) arrive here as raised
        stop = e if isinstance(e, progress.Interrupted) else progress.Interrupted.of(e)
        progress.ignore_stop_signals()  # a second Ctrl-C must not turn the one line into a traceback
        sys.stdout.flush()
        print(stop.message(), file=sys.stderr)
        sys.exit(stop.exit_status)


def _options(group: str, dirs: list[str]) -> list[str]:
    from pathlib import Path

    found = {p.stem for d in [*map(Path, dirs), conf_dir()] for p in (d / group).glob("*.yaml")}
    return sorted(n for n in found if not n.startswith("_"))


def _fail(message: str) -> None:
    print(f"fewshot-eval: error: {message}", file=sys.stderr)
    sys.exit(2)


@contextlib.contextmanager
def _compact_user_errors() -> Iterator[None]:
    """Hydra reports every error of composing or sweeping in ``hydra._internal.utils.run_and_report``
    (several lines, exit 1, or a long traceback for a YAML syntax error). While the app runs, errors
    a user makes (config errors, malformed YAML, unknown options) are turned into one line and
    exit 2 before Hydra sees them; ``HYDRA_FULL_ERROR=1`` still shows Hydra's full report."""
    import hydra._internal.utils as hydra_utils

    original = hydra_utils.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        def guarded() -> Any:
            try:
                return func()
            except BrokenPipeError:  # e.g. `... dry_run=true | head`: stop quietly
                quiet_broken_pipe()
                sys.exit(1)
            except Exception as ex:
                message = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else user_error_message(ex)
                if message is None:
                    raise
                _fail(message)

        return original(guarded)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def user_error_message(ex: BaseException) -> Optional[str]:
    """A one-line message for an error the user can fix in their command or config files; None
    for anything else (a bug, a failing job): Hydra reports those as usual."""
    from hydra.errors import MissingConfigException, OverrideParseException

    yaml_error = _yaml_error(ex)
    if yaml_error is not None:
        return yaml_error
    if isinstance(ex, ConfigError):
        return str(ex)
    if isinstance(ex, MissingConfigException) and ex.missing_cfg_file and "/" in ex.missing_cfg_file:
        group, name = ex.missing_cfg_file.rsplit("/", 1)
        if group in PRESET_AND_SETTING_GROUPS:
            options = ", ".join(o for o in (ex.options or []) if not o.startswith("_")) or "(none)"
            return f"Unknown {group} '{name}'. Available: {options}. Add {group}/{name}.yaml to a config dir (--config-dir) or pick one of these.{_quote_hint(group, name)}"
    if isinstance(ex, OverrideParseException) and not ex.override.isascii():
        key, _, value = ex.override.partition("=")
        quoted = ",".join(v if v.isascii() or v.startswith(("'", '"')) else f'"{v.strip()}"' for v in value.split(","))
        return (
            f"cannot parse '{ex.override}': Hydra's override syntax needs quotes around a value with "
            f"non-ASCII letters; in the shell write '{key}={quoted}'."
        )
    return None


def _quote_hint(group: str, name: str) -> str:
    if name.isascii() and not any(c.isspace() for c in name):
        return ""
    return f" (A name with spaces or non-ASCII letters is quoted like this in the shell: '{group}=\"{name}\"'.)"


def _yaml_error(ex: BaseException) -> Optional[str]:
    """``file:line: invalid YAML: ...`` for a YAML syntax error anywhere in the exception's causes."""
    import yaml

    seen: set[int] = set()
    e: Optional[BaseException] = ex
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, yaml.MarkedYAMLError):
            mark = e.context_mark or e.problem_mark
            where = f"{mark.name}:{mark.line + 1}: " if mark is not None and not str(mark.name).startswith("<") else ""
            parts = []
            for text, m in ((e.context, e.context_mark), (e.problem, e.problem_mark)):
                if text:
                    parts.append(f"{text} (line {m.line + 1}, column {m.column + 1})" if m is not None else text)
            return f"{where}invalid YAML: {', '.join(parts) or type(e).__name__}"
        if isinstance(e, yaml.YAMLError):
            return f"invalid YAML: {' '.join(str(e).split())}"
        e = e.__cause__ or e.__context__
    return None


def quiet_broken_pipe() -> None:
    """After a BrokenPipeError on stdout: point stdout at /dev/null so that Python's final flush
    does not raise again (as Python's docs on SIGPIPE recommend)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout already closed or replaced
        pass

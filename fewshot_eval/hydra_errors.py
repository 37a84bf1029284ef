"""Errors a user makes, reported as one line and exit status 2 instead of Hydra's report.

Hydra reports every error of composing a config or sweeping in ``hydra._internal.utils.run_and_report``:
several lines and exit status 1, or a long traceback for a YAML syntax error. Hydra 1.3.8 has no
public way to change that: ``hydra.main`` takes no error handler, and ``HYDRA_FULL_ERROR=1`` (its one
public switch) turns every error into a full traceback. So, and only here, :func:`compact_user_errors`
replaces that private function while the app runs: an error the user can fix (a config error,
malformed YAML, an unknown option, an override Hydra cannot parse, a key the config does not have --
with the closest valid name) becomes one line and exit 2; anything else (a bug, a failing job)
goes to Hydra's own report unchanged, and ``HYDRA_FULL_ERROR=1`` still shows Hydra's full report.
``tests/test_hydra_errors.py`` fails if Hydra's private function disappears or changes its signature.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Any, Callable, Iterator, NoReturn, Optional

from fewshot_eval.config import ConfigError, closest

EXIT_USER_ERROR = 2
PRESET_AND_SETTING_GROUPS = ("model", "task", "models", "tasks", "experiment", "task_def", "site")


def fail(message: str) -> NoReturn:
    print(f"fewshot-eval: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


@contextlib.contextmanager
def compact_user_errors() -> Iterator[None]:
    """While inside, Hydra's ``run_and_report`` is :func:`_run_and_report` (see the module docstring)."""
    import hydra._internal.utils as hydra_utils

    original = hydra_utils.run_and_report
    hydra_utils.run_and_report = functools.partial(_run_and_report, original=original)
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def _run_and_report(func: Callable[[], Any], original: Callable[[Callable[[], Any]], Any]) -> Any:
    try:
        return func()
    except BrokenPipeError:  # e.g. `... dry_run=true | head`: stop quietly
        quiet_broken_pipe()
        sys.exit(1)
    except Exception as ex:
        from fewshot_eval import progress

        if progress.received is not None:  # a stop signal that landed inside Hydra/OmegaConf code surfaced as
            raise progress.Interrupted(progress.received) from None  # another error there: it is still a stop
        message = compact_message(ex)
        if message is None:
            return original(functools.partial(_reraise, ex))  # Hydra's report, exit status 1
        fail(message)


def _reraise(ex: BaseException) -> NoReturn:
    raise ex


def compact_message(ex: BaseException) -> Optional[str]:
    """:func:`user_error_message`, unless ``HYDRA_FULL_ERROR=1`` asks for Hydra's full report of everything."""
    return None if os.environ.get("HYDRA_FULL_ERROR") == "1" else user_error_message(ex)


def user_error_message(ex: BaseException) -> Optional[str]:
    """A one-line message for an error the user can fix in their command or config files; None for
    anything else (a bug, a failing job): Hydra reports those as usual."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    yaml_error = _yaml_error(ex)
    if yaml_error is not None:
        return yaml_error
    if isinstance(ex, ConfigError):
        return str(ex)
    if isinstance(ex, MissingConfigException) and ex.missing_cfg_file and "/" in ex.missing_cfg_file:
        group, name = ex.missing_cfg_file.rsplit("/", 1)
        if group in PRESET_AND_SETTING_GROUPS:
            visible = [o for o in (ex.options or []) if not o.startswith("_")]
            options = ", ".join(visible) or "(none)"
            return (f"Unknown {group} '{name}'{closest(name, visible)}. Available: {options}. "
                    f"Add {group}/{name}.yaml to a config dir (--config-dir) or pick one of these.{_quote_hint(group, name)}")
    if isinstance(ex, ConfigCompositionException):
        unknown = _unknown_override_key(ex)
        if unknown is not None:
            return unknown
    if isinstance(ex, OverrideParseException) and ex.override.isascii():
        return _parse_error(ex)
    if isinstance(ex, OverrideParseException) and not ex.override.isascii():
        key, _, value = ex.override.partition("=")
        quoted = ",".join(v if v.isascii() or v.startswith(("'", '"')) else f'"{v.strip()}"' for v in value.split(","))
        return (
            f"cannot parse '{ex.override}': Hydra's override syntax needs quotes around a value with "
            f"non-ASCII letters; in the shell write '{key}={quoted}'."
        )
    return None


def _unknown_override_key(ex: BaseException) -> Optional[str]:
    """Hydra's "Could not override 'x'. To append to your config use +x=..." for a key the config does not
    have: the app's one line with the closest valid key (top-level, or a model/task setting's field)."""
    import dataclasses
    import re

    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    m = re.match(r"Could not override '([^']+)'", str(ex))
    if m is None or not isinstance(ex.__cause__, (ConfigAttributeError, ConfigKeyError)):
        return None
    key = m.group(1)
    value = re.search(r"use \+\S+?=(.*)$", str(ex), re.S)
    shown = f"'{key}={value.group(1).strip()}'" if value else f"'{key}'"
    if "." not in key:
        from fewshot_eval.plan.checks import unknown_key_message, valid_top_level_keys

        return unknown_key_message(key, valid_top_level_keys(), shown)
    from fewshot_eval.settings import ModelSetting, TaskSetting

    head, _, rest = key.partition(".")
    schema = {"model": ModelSetting, "task": TaskSetting}.get(head)
    if schema is None or "." in rest:
        return f"{shown}: unknown key '{key}': the config has no such key. Check its spelling (fewshot-eval --cfg job shows the config)."
    fields = [f.name for f in dataclasses.fields(schema)]
    return (f"{shown}: unknown key '{key}'{closest(key, [head + '.' + f for f in fields])}. Valid keys of a {head} setting: "
            f"{', '.join(head + '.' + f for f in fields)}.")


def _parse_error(ex: Any) -> str:
    """Hydra's grammar error for an override (``output_dir=~/x``, ``nshot=[0,2``) as one line with the fix."""
    key, _, value = ex.override.partition("=")
    reason = str(ex).splitlines()[0] if str(ex) else "invalid syntax"
    if value.count("[") != value.count("]") or value.count("{") != value.count("}"):
        fix = f"close the bracket (a list is {key.lstrip('+~')}=[a,b]; a sweep with -m is {key.lstrip('+~')}=a,b)"
    else:
        fix = f"quote a value with special characters; in the shell write '{key}=\"{value}\"'"
    return f"cannot parse the override '{ex.override}' ({reason}): {fix}. See https://hydra.cc/docs/advanced/override_grammar/basic/"


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


def quiet_log_write_errors() -> None:
    """A log file that cannot be written (a full disk) loses its lines without Python's '--- Logging error ---'
    traceback on the terminal: the job that cannot write its results says so in its own line. Other
    logging errors (a bad format string) are reported as Python does."""
    import logging

    original = logging.Handler.handleError
    if getattr(original, "quiet_os_errors", False):
        return

    def handle_error(self: logging.Handler, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return
        original(self, record)

    handle_error.quiet_os_errors = True  # type: ignore[attr-defined]
    logging.Handler.handleError = handle_error  # type: ignore[method-assign]

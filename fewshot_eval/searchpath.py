"""User config dirs (``--config-dir DIR``) are searched BEFORE the packaged config dir.

So ``DIR/model/tiny_gpt2.yaml`` replaces the packaged ``model/tiny_gpt2.yaml`` (as the original
tool's ``--user-dir`` did). Hydra itself puts ``--config-dir`` after the packaged dir, and adds it
after every SearchPathPlugin has run, so :func:`take_config_dir_args` (called by
``fewshot_eval.app.run_hydra``) removes ``--config-dir X`` / ``-cd X`` / ``--config-dir=X`` from
the command line and passes the dirs on in ``$FEWSHOT_EVAL_CONFIG_DIRS``; the SearchPathPlugin in
``hydra_plugins/fewshot_eval_plugins/user_config_dirs.py`` puts them before ``main`` (the packaged dir)
with provider ``command-line``. Several dirs: the first one given wins.

The resulting search order, first match wins, is also what ``hydra.runtime.config_sources``
lists: user dirs, then the packaged dir, then ``hydra.searchpath`` entries. Everything that looks
files up itself (task definitions, ``fewshot-eval list``/``recalc --config-dir``) keeps that order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from fewshot_eval.config import ConfigError

ENV = "FEWSHOT_EVAL_CONFIG_DIRS"
PROVIDER = "command-line"  # what Hydra calls --config-dir entries; launch/parallel.py passes these on
_FLAGS = ("--config-dir", "-cd")


class ConfigDirError(ConfigError):
    """A --config-dir that does not exist or is not a directory."""


def take_config_dir_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` into (the other arguments, the --config-dir values in order).

    A flag without a value is left in place for Hydra's own argument parser to report."""
    rest: list[str] = []
    dirs: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _FLAGS and i + 1 < len(argv):
            dirs.append(argv[i + 1])
            i += 2
            continue
        flag, eq, value = a.partition("=")
        if eq and flag in _FLAGS:
            dirs.append(value)
        else:
            rest.append(a)
        i += 1
    return rest, dirs


def checked_dirs(dirs: Iterable[str | Path], packaged: Path | None = None) -> list[str]:
    """Absolute, de-duplicated (first one kept) dirs; a missing one raises :class:`ConfigDirError`.

    ``packaged`` (the packaged config dir) is dropped: it is searched anyway."""
    out: list[str] = []
    for d in dirs:
        p = Path(os.path.abspath(os.path.expanduser(str(d))))
        if not p.is_dir():
            what = "is not a directory" if p.exists() else "not found"
            raise ConfigDirError(f"config dir '{p}' (--config-dir {d}) {what}.")
        if str(p) not in out and (packaged is None or p != packaged.resolve()):
            out.append(str(p))
    return out


def env_dirs() -> list[str]:
    """The user config dirs passed on in ``$FEWSHOT_EVAL_CONFIG_DIRS``, first = highest priority."""
    return [d for d in os.environ.get(ENV, "").split(os.pathsep) if d]


def set_env_dirs(dirs: Sequence[str]) -> None:
    if dirs:
        os.environ[ENV] = os.pathsep.join(dirs)
    else:
        os.environ.pop(ENV, None)


def prepend_user_dirs(search_path: Any, dirs: Sequence[str]) -> None:
    """Put ``dirs`` (in this order) before the ``main`` entry of a Hydra ConfigSearchPath."""
    from hydra.core.config_search_path import SearchPathQuery

    anchor = "main" if any(e.provider == "main" for e in search_path.get_path()) else "schema"
    for d in dirs:
        search_path.prepend(provider=PROVIDER, path=f"file://{d}", anchor=SearchPathQuery(provider=anchor))

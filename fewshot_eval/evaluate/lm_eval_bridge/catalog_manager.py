"""lm-eval's ``TaskManager`` over the catalog's small index (a job's, built on first use).

lm-eval's ``TaskManager`` indexes every YAML it can find (~8 s) and keeps each one's config, but
builds a task, group or tag from its entry's *YAML path* (its factory reads the config from the
file whenever the entry has one), so an index of names -> (kind, path, tags) builds the same tasks.
:func:`task_manager` hands lm-eval's ``TaskManager`` those entries in place of its own indexing;
entries of an include dir that name relative data files carry their config with the paths made
relative to the YAML (lm-eval would take them relative to the working directory).
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import file_list, yaml_loader

if TYPE_CHECKING:
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import Catalog

log = logging.getLogger("fewshot_eval")


@lru_cache(maxsize=4)
def task_manager(cat: "Catalog") -> Any:
    """lm-eval's ``TaskManager`` whose index is the catalog's (lm-eval's ``Entry`` per name, its config
    read from its YAML when a task is built), once per catalog. Where lm-eval has no ``TaskIndex.build``
    to stand in for, it indexes as it does."""
    from lm_eval.tasks import TaskManager  # heavy: imported here only
    from lm_eval.tasks._index import Entry, Kind, TaskIndex

    entries = {}
    for name, row in cat.index.items():
        entry = Entry(name=name, kind=Kind[row.kind], yaml_path=Path(row.path) if row.path else None, tags=set(row.tags))
        if row.root > 0 and row.path:
            _absolute_data_files(entry)
        entries[name] = entry
    include = [str(d) for d in cat.dirs] or None
    original = TaskIndex.__dict__.get("build")
    if not isinstance(original, staticmethod):
        log.warning("lm-eval %s has no TaskIndex.build: indexing its whole catalog", type(TaskIndex))
        return TaskManager(include_path=include)

    def build(paths: Any, **_: Any) -> dict[str, Any]:
        return dict(entries)

    TaskIndex.build = staticmethod(build)
    try:
        return TaskManager(include_path=include)
    finally:
        TaskIndex.build = original


def _absolute_data_files(entry: Any) -> None:
    """A YAML of an include dir naming relative data files: take them relative to the YAML (lm-eval would
    take them relative to the working directory). The entry then carries its resolved config."""
    load_yaml = yaml_loader().load_yaml
    base = Path(entry.yaml_path).parent
    raw = load_yaml(entry.yaml_path, resolve_func=False)
    if not _has_relative_paths(raw):
        return
    from lm_eval.tasks._yaml_loader import load_yaml as load_resolving  # resolves !function: lm-eval's module cache

    cfg = load_resolving(entry.yaml_path, resolve_func=True)
    kwargs = dict(cfg.get("dataset_kwargs") or {})
    if "data_files" in kwargs:
        kwargs["data_files"] = _map_files(kwargs["data_files"], lambda f: str((base / f).resolve()) if _relative(f) else f)
        cfg["dataset_kwargs"] = kwargs
    dp = cfg.get("dataset_path")
    if isinstance(dp, str) and _relative(dp) and (base / dp).is_dir():
        cfg["dataset_path"] = str((base / dp).resolve())
    entry.cfg, entry.yaml_path = cfg, None


def _relative(f: Any) -> bool:
    return isinstance(f, str) and "://" not in f and not os.path.isabs(os.path.expanduser(f))


def _has_relative_paths(cfg: dict[str, Any]) -> bool:
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    rel = [f for f in file_list(files) if _relative(f)]
    dp = cfg.get("dataset_path")
    return bool(rel) or (isinstance(dp, str) and _relative(dp) and "/" in dp and dp.startswith("."))


def _map_files(data_files: Any, fn: Any) -> Any:
    if isinstance(data_files, str):
        return fn(data_files)
    if isinstance(data_files, list):
        return [_map_files(f, fn) for f in data_files]
    if isinstance(data_files, dict):
        return {k: _map_files(v, fn) for k, v in data_files.items()}
    return data_files

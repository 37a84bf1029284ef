"""lm-evaluation-harness's task catalog as a task source: ``lm_eval:<name>`` in a task setting's ``tasks``.

A task setting lists catalog tasks next to its own task definitions::

    # conf/task/my_mix.yaml
    run_name: mix
    tasks: [lm_eval:arc_easy, lm_eval:hellaswag, copa_demo]   # lm_eval:<task, group or tag name>

The catalog is lm-eval's own: the names its ``TaskIndex`` finds in its built-in task YAMLs and in
``<config dir>/lm_eval_tasks/`` of every config dir (a user's YAML of the same name wins), built
into tasks by its ``TaskManager``. Indexing lm-eval's ~14,000 YAMLs takes ~8 s, and its full index
(every config, 16 MB) ~2.4 s to load, so what the planner and a job need of it is kept on disk:
per directory, a small *name -> config file* table (kind, YAML path, tags; ~2 MB, read in ~15 ms),
built once by lm-eval's ``TaskIndex`` and keyed by lm_eval's version and the directory's files --
for an installed lm-eval release the hash of its ``RECORD`` (which lists every file's hash), for
an editable lm-eval and for include dirs the name, size and mtime of every YAML (an edited YAML
rebuilds that directory's table only). The planner reads only the YAMLs of the names it plans,
with lm-eval's YAML loader (without importing lm-eval's task modules, ~1 s); a job builds lm-eval's
``TaskManager`` over the same table (:mod:`~fewshot_eval.evaluate.lm_eval_bridge.catalog_manager`),
whose factory reads each task's YAML from its path exactly as it does after its own indexing.

In YAMLs under ``<config dir>/lm_eval_tasks/``, relative ``dataset_kwargs.data_files`` (and a
relative ``dataset_path`` directory) are taken relative to the YAML file, so a task can point
at data kept next to it.

Beside this module, each answering one question without loading any data:
:mod:`~fewshot_eval.evaluate.lm_eval_bridge.catalog_identity` (what identifies a catalog task's
configuration, which local files it reads), :mod:`~fewshot_eval.evaluate.lm_eval_bridge.catalog_checks`
(will it run: the planning checks), :mod:`~fewshot_eval.evaluate.lm_eval_bridge.catalog_search`
(``fewshot-eval list catalog``). The evaluation itself is
:mod:`~fewshot_eval.evaluate.lm_eval_bridge.catalog_runner`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, NamedTuple, Optional, Sequence

from fewshot_eval.config import ConfigError

log = logging.getLogger("fewshot_eval")

PREFIX = "lm_eval:"
INCLUDE_DIR = "lm_eval_tasks"  # <config dir>/lm_eval_tasks/: your own lm-eval task YAMLs
INDEX_FORMAT = 2  # bump when what is stored changes (1: lm-eval's whole pickled index)
KEEP = 16  # index files kept in the cache (the newest used)


def is_catalog(name: str) -> bool:
    """``lm_eval:<name>`` names a task (or group / tag) of lm-eval's catalog."""
    return isinstance(name, str) and name.startswith(PREFIX)


def bare(name: str) -> str:
    """``lm_eval:arc_easy`` -> ``arc_easy``."""
    return name[len(PREFIX):] if is_catalog(name) else name


@lru_cache(maxsize=1)
def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


@lru_cache(maxsize=1)
def lm_eval_dir() -> Path:
    """The installed ``lm_eval`` package directory (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("lm_eval is not installed: pip install lm-eval (catalog tasks `lm_eval:<name>` need it).")
    return Path(list(spec.submodule_search_locations)[0])


def include_dirs(search: Sequence[Path]) -> list[Path]:
    """``<config dir>/lm_eval_tasks`` of the config dirs that have one, lowest priority first (lm-eval
    lets a later include path override an earlier one; the config search path puts yours first)."""
    return [Path(d) / INCLUDE_DIR for d in reversed(list(search)) if (Path(d) / INCLUDE_DIR).is_dir()]


def _search(search: Optional[Iterable[Path]]) -> list[Path]:
    from fewshot_eval.config import config_dirs

    return list(search) if search is not None else config_dirs()


def yaml_loader() -> ModuleType:
    """lm-eval's ``lm_eval.tasks._yaml_loader`` -- imported if lm-eval's task package already is, else
    its file run alone (importing ``lm_eval.tasks`` imports datasets and pandas: ~1 s)."""
    loaded = sys.modules.get("lm_eval.tasks._yaml_loader")
    return loaded if loaded is not None else _standalone_yaml_loader()


@lru_cache(maxsize=1)
def _standalone_yaml_loader() -> ModuleType:
    import importlib.util

    path = lm_eval_dir() / "tasks" / "_yaml_loader.py"
    spec = importlib.util.spec_from_file_location("fewshot_eval._lm_eval_yaml_loader", path)
    if spec is None or spec.loader is None:  # another lm-eval layout
        import lm_eval.tasks._yaml_loader as mod

        return mod
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Row(NamedTuple):
    """One name of the catalog: lm-eval's index entry without its config."""

    kind: str  # lm-eval's Kind: TASK, PY_TASK, GROUP or TAG
    path: Optional[str]  # its YAML (absolute); None for a tag
    tags: tuple[str, ...]  # a task's tags; a tag's tasks
    root: int  # 0: lm-eval's own tasks, 1...: the include dirs, lowest priority first


class RowIndex(Mapping[str, Row]):
    """Name -> :class:`Row` over the directories' stored tables, merged as lm-eval merges its include
    paths (a later directory's name replaces an earlier one's); a Row is built when asked for."""

    def __init__(self, roots: Sequence[Path], tables: Sequence[dict[str, list[Any]]]) -> None:
        self._roots, self._tables = [str(r) for r in roots], list(tables)
        self._where: dict[str, int] = {}
        for i, table in enumerate(self._tables):
            if i:
                for name in table.keys() & self._where.keys():
                    log.debug("lm-eval task '%s' of %s replaces the one of %s", name, self._roots[i], self._roots[self._where[name]])
            self._where.update(dict.fromkeys(table, i))

    def __getitem__(self, name: str) -> Row:
        i = self._where[name]
        kind, rel, tags = self._tables[i][name]
        return Row(kind, None if rel is None else os.path.join(self._roots[i], rel), tuple(tags), i)

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


class Catalog:
    """The catalog's names -> (kind, YAML, tags) over lm-eval's tasks and the include dirs, and the YAML of each."""

    def __init__(self, roots: Sequence[Path], tables: Sequence[dict[str, list[Any]]]) -> None:
        self.roots = list(roots)  # lm_eval/tasks, then the include dirs
        self.dirs = self.roots[1:]  # the include dirs, resolved
        self.index = RowIndex(self.roots, tables)
        self._closures: dict[str, dict[str, Optional[dict[str, Any]]]] = {}

    @property
    def lm_eval_dir(self) -> Path:
        """The ``lm_eval`` package directory (resolved): what ``lm_eval/...`` paths are relative to."""
        return self.roots[0].resolve().parent

    def entry(self, name: str) -> Row:
        """The index row of a catalog name; an unknown one is a ConfigError listing close matches."""
        if name not in self.index:
            close = difflib.get_close_matches(name, sorted(self.index), n=5, cutoff=0.6)
            hint = f" Close matches: {', '.join(PREFIX + c for c in close)}." if close else ""
            raise ConfigError(
                f"task '{PREFIX}{name}': not in lm-eval's task catalog (lm_eval {lm_eval_version()}).{hint} "
                f"Search it with `fewshot-eval list catalog '*{name[:6]}*'`, or add a YAML task to <config dir>/{INCLUDE_DIR}/."
            )
        return self.index[name]

    def source(self, name: str) -> Optional[Path]:
        """The YAML of a catalog name (None for a tag or an unknown name)."""
        row = self.index.get(name)
        return Path(row.path) if row is not None and row.path else None

    def yours(self, name: str) -> bool:
        """The name comes from an include dir (``<config dir>/lm_eval_tasks``)."""
        row = self.index.get(name)
        return row is not None and row.root > 0

    def raw_config(self, name: str) -> Optional[dict[str, Any]]:
        """The entry's config as written (includes merged, ``!function`` as paths), or None (tags)."""
        src = self.source(name)
        return yaml_loader().load_yaml(src, resolve_func=False) if src is not None else None

    def closure(self, name: str) -> dict[str, Optional[dict[str, Any]]]:
        """Every entry ``name`` expands to (itself, a group's members, a tag's tasks) -> raw config (memoised:
        a changed file in an include dir gives a new Catalog)."""
        if name not in self._closures:
            self._closures[name] = self._closure(name)
        return self._closures[name]

    def _closure(self, name: str) -> dict[str, Optional[dict[str, Any]]]:
        out: dict[str, Optional[dict[str, Any]]] = {}
        todo = [name]
        while todo:
            n = todo.pop()
            if n in out:
                continue
            row = self.entry(n)
            cfg = self.raw_config(n)
            out[n] = cfg
            if row.kind == "TAG":
                todo.extend(sorted(row.tags))
            elif row.kind == "GROUP" and cfg:
                for member in cfg.get("task") or []:
                    if isinstance(member, str) and member in self.index:
                        todo.append(member)
                    elif isinstance(member, dict):
                        ref = member.get("task") if isinstance(member.get("task"), str) else member.get("group")
                        if isinstance(ref, str) and ref in self.index:
                            todo.append(ref)
        return out

    def leaf_configs(self, name: str) -> dict[str, dict[str, Any]]:
        """The task (not group or tag) configs ``name`` expands to."""
        return {n: c for n, c in self.closure(name).items() if c and "group" not in c and isinstance(c.get("task"), str)}

    def data_file_patterns(self, leaf: str, cfg: dict[str, Any]) -> list[Path]:
        """The local ``dataset_kwargs.data_files`` of a leaf task (globs; relative ones relative to its YAML)."""
        src = self.source(leaf)
        base = src.parent if src is not None else Path.cwd()
        out = []
        for f in file_list((cfg.get("dataset_kwargs") or {}).get("data_files")):
            if "://" in f:
                continue
            p = Path(os.path.expanduser(f))
            out.append(p if p.is_absolute() else base / p)
        return out


def is_under(path: Path, root: Path) -> bool:
    """``path`` (resolved) lies under ``root``."""
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False


def file_list(data_files: Any) -> list[str]:
    """The file names in a ``data_files`` value (a string, a list, or a dict of them)."""
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, list):
        return [f for f in data_files if isinstance(f, str)]
    if isinstance(data_files, dict):
        return [f for v in data_files.values() for f in file_list(v)]
    return []


# -- the name -> config-file tables kept on disk ------------------------------------------------


def _files_stamp(root: Path, suffixes: tuple[str, ...] = (".yaml", ".yml", ".py")) -> str:
    """Digest of the name, size and mtime of every file with ``suffixes`` under ``root``."""
    h = hashlib.sha256()
    stack, seen = [str(root)], set()
    rows = []
    while stack:
        d = stack.pop()
        real = os.path.realpath(d)
        if real in seen:  # a symlink loop
            continue
        seen.add(real)
        try:
            with os.scandir(d) as it:
                for e in it:
                    if e.is_dir():
                        stack.append(e.path)
                    elif e.name.endswith(suffixes):
                        st = e.stat()
                        rows.append(f"{e.path}\0{st.st_size}\0{st.st_mtime_ns}\n")
        except OSError:
            continue
    for r in sorted(rows):
        h.update(r.encode())
    return h.hexdigest()[:32]


@lru_cache(maxsize=1)
def _lm_eval_stamp() -> str:
    """What lm-eval's own tasks are: for an installed release, the hash of its ``RECORD`` (which lists the
    hash of every task file); for an editable install or a source checkout, its files' names, sizes, mtimes.
    Once per process."""
    from importlib.metadata import PackageNotFoundError, distribution

    root = lm_eval_dir() / "tasks"
    try:
        dist = distribution("lm_eval")
        record = dist.read_text("RECORD") or ""
        located = Path(str(dist.locate_file("lm_eval/tasks")))
    except (PackageNotFoundError, OSError):
        record, located = "", Path()
    if "lm_eval/tasks/" in record and located.resolve() == root.resolve():
        return "record:" + hashlib.sha256(record.encode()).hexdigest()[:32]
    return "files:" + _files_stamp(root)


def _root_stamp(root: Path, builtin: bool) -> str:
    return _lm_eval_stamp() if builtin else _files_stamp(root)


def _table_file(root: Path, stamp: str) -> Path:
    from fewshot_eval.config import cache_dir

    key = hashlib.sha256(json.dumps([INDEX_FORMAT, lm_eval_version(), str(root), stamp]).encode()).hexdigest()[:32]
    return cache_dir() / "lm_eval_index" / f"{key}.json"


@lru_cache(maxsize=64)
def _table(root: str, stamp: str) -> dict[str, list[Any]]:
    """The name -> [kind, YAML relative to ``root``, tags] table of one directory: read from the cache,
    else built by lm-eval's ``TaskIndex`` and stored (atomically; the :data:`KEEP` newest used files are kept)."""
    path = Path(root)
    f = _table_file(path, stamp)
    try:
        stored = json.loads(f.read_bytes())["entries"]
        if not isinstance(stored, dict):
            raise ValueError("no table of names")
        os.utime(f)  # recently used: kept
        return stored
    except FileNotFoundError:
        pass
    except Exception as e:  # noqa: BLE001 - a damaged cache file is rebuilt
        log.warning("lm-eval task index cache %s unreadable (%s): rebuilding it", f, e)
    t0 = time.perf_counter()
    entries = build_table(path)
    log.info("indexed lm-eval's tasks in %s (%d names) in %.1fs", root, len(entries), time.perf_counter() - t0)
    try:
        from fewshot_eval.store.atomic import write_bytes

        f.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(f, json.dumps({"format": INDEX_FORMAT, "root": root, "entries": entries}, separators=(",", ":")).encode())
        for old in sorted(f.parent.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError as e:
        log.warning("lm-eval task index not cached in %s: %s", f.parent, e)
    return entries


def build_table(root: Path) -> dict[str, list[Any]]:
    """lm-eval's index of one directory (its ``TaskIndex.build``) as name -> [kind, YAML relative to
    ``root`` or None, sorted tags]."""
    from lm_eval.tasks._index import TaskIndex  # heavy: imported on a cache miss only

    out: dict[str, list[Any]] = {}
    for name, e in TaskIndex.build([root]).items():
        rel = None if e.yaml_path is None else Path(os.path.relpath(e.yaml_path, root)).as_posix()
        out[name] = [e.kind.name, rel, sorted(e.tags)]
    return out


@lru_cache(maxsize=4)
def _catalog(roots: tuple[str, ...], stamps: tuple[str, ...]) -> Catalog:
    t0 = time.perf_counter()
    tables = [_table(r, s) for r, s in zip(roots, stamps)]
    cat = Catalog([Path(r) for r in roots], tables)
    log.debug("read lm-eval's task catalog (%d names, include paths %s) in %.2fs",
              len(cat.index), list(roots[1:]) or "none", time.perf_counter() - t0)
    return cat


_RECENT: dict[tuple[str, ...], tuple[float, Catalog]] = {}


def look_again() -> None:
    """The next :func:`catalog` call checks the include dirs for changes (a new plan starts)."""
    _RECENT.clear()


def catalog(search: Optional[Iterable[Path]] = None) -> Catalog:
    """The catalog for the config search path: read once per process and set of include dirs (again
    when a file in an include dir changes; looked at most every 2 s, a plan asks once per job)."""
    key = tuple(str(d) for d in _search(search))
    hit = _RECENT.get(key)
    if hit is not None and time.monotonic() - hit[0] < 2:
        return hit[1]
    roots = [lm_eval_dir() / "tasks", *(d.resolve() for d in include_dirs([Path(d) for d in key]))]
    stamps = tuple(_root_stamp(r, i == 0) for i, r in enumerate(roots))
    cat = _catalog(tuple(str(r) for r in roots), stamps)
    _RECENT[key] = (time.monotonic(), cat)
    return cat

"""lm-evaluation-harness's task catalog as a task source: ``lm_eval:<name>`` in a task setting's ``tasks``.

A task setting lists catalog tasks next to its own task definitions::

    # conf/task/my_mix.yaml
    run_name: mix
    tasks: [lm_eval:arc_easy, lm_eval:hellaswag, copa_demo]   # lm_eval:<task, group or tag name>

The catalog is lm-eval's own :class:`lm_eval.tasks.TaskManager` (its built-in task YAMLs, plus
``<config dir>/lm_eval_tasks/`` of every config dir, where a user's YAML of the same name wins).
It is built once per process. Indexing ~15,000 YAML files takes ~8 s, so the index lm-eval
builds is kept on disk (``$FEWSHOT_EVAL_CACHE/lm_eval_index/``, keyed by lm_eval's version and
the names, sizes and mtimes of the YAML files it reads: an edited YAML rebuilds it); loading it
takes ~0.6 s, in the planner and in every job.

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

import contextlib
import difflib
import hashlib
import json
import logging
import os
import pickle
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from fewshot_eval.config import ConfigError

log = logging.getLogger("fewshot_eval")

PREFIX = "lm_eval:"
INCLUDE_DIR = "lm_eval_tasks"  # <config dir>/lm_eval_tasks/: your own lm-eval task YAMLs


def is_catalog(name: str) -> bool:
    """``lm_eval:<name>`` names a task (or group / tag) of lm-eval's catalog."""
    return isinstance(name, str) and name.startswith(PREFIX)


def bare(name: str) -> str:
    """``lm_eval:arc_easy`` -> ``arc_easy``."""
    return name[len(PREFIX):] if is_catalog(name) else name


def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def include_dirs(search: Sequence[Path]) -> list[Path]:
    """``<config dir>/lm_eval_tasks`` of the config dirs that have one, lowest priority first (lm-eval
    lets a later include path override an earlier one; the config search path puts yours first)."""
    return [Path(d) / INCLUDE_DIR for d in reversed(list(search)) if (Path(d) / INCLUDE_DIR).is_dir()]


def _search(search: Optional[Iterable[Path]]) -> list[Path]:
    from fewshot_eval.config import config_dirs

    return list(search) if search is not None else config_dirs()


class Catalog:
    """lm-eval's TaskManager plus the original YAML of each entry (for hashing and messages)."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        from lm_eval.tasks import TaskManager  # heavy: imported here only

        t0 = time.perf_counter()
        self.dirs = [d.resolve() for d in dirs]
        with _index_on_disk():
            self.manager = TaskManager(include_path=[str(d) for d in self.dirs] or None)
        self.sources: dict[str, Path] = {}  # entry -> its YAML (also for entries rewritten below)
        self._closures: dict[str, dict[str, Optional[dict[str, Any]]]] = {}
        for name, entry in self.manager.task_index.items():
            if entry.yaml_path is not None:
                self.sources[name] = Path(entry.yaml_path)
                if any(is_under(Path(entry.yaml_path), d) for d in self.dirs):
                    _absolute_data_files(entry)
        log.info("indexed lm-eval's task catalog (%d names, include paths %s) in %.1fs",
                 len(self.manager.all_tasks), [str(d) for d in self.dirs] or "none", time.perf_counter() - t0)

    @property
    def index(self) -> dict[str, Any]:
        return self.manager.task_index

    def entry(self, name: str) -> Any:
        """The index entry of a catalog name; an unknown one is a ConfigError listing close matches."""
        entry = self.index.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, self.manager.all_tasks, n=5, cutoff=0.6)
            hint = f" Close matches: {', '.join(PREFIX + c for c in close)}." if close else ""
            raise ConfigError(
                f"task '{PREFIX}{name}': not in lm-eval's task catalog (lm_eval {lm_eval_version()}).{hint} "
                f"Search it with `fewshot-eval list catalog '*{name[:6]}*'`, or add a YAML task to <config dir>/{INCLUDE_DIR}/."
            )
        return entry

    def raw_config(self, name: str) -> Optional[dict[str, Any]]:
        """The entry's config as written (includes merged, ``!function`` as paths), or None (tags)."""
        from lm_eval.tasks._yaml_loader import load_yaml

        src = self.sources.get(name)
        if src is not None:
            return load_yaml(src, resolve_func=False)
        entry = self.index.get(name)
        return dict(entry.cfg) if entry is not None and entry.cfg else None

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
            entry = self.entry(n)
            cfg = self.raw_config(n)
            out[n] = cfg
            kind = entry.kind.name
            if kind == "TAG":
                todo.extend(sorted(entry.tags))
            elif kind == "GROUP" and cfg:
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
        base = self.sources[leaf].parent if leaf in self.sources else Path.cwd()
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


def _absolute_data_files(entry: Any) -> None:
    """A YAML of an include dir naming relative data files: take them relative to the YAML (lm-eval would
    take them relative to the working directory). The entry then carries its resolved config."""
    from lm_eval.tasks._yaml_loader import load_yaml

    base = Path(entry.yaml_path).parent
    raw = load_yaml(entry.yaml_path, resolve_func=False)
    if not _has_relative_paths(raw):
        return
    cfg = load_yaml(entry.yaml_path, resolve_func=True)
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


def file_list(data_files: Any) -> list[str]:
    """The file names in a ``data_files`` value (a string, a list, or a dict of them)."""
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, list):
        return [f for f in data_files if isinstance(f, str)]
    if isinstance(data_files, dict):
        return [f for v in data_files.values() for f in file_list(v)]
    return []


def _map_files(data_files: Any, fn: Any) -> Any:
    if isinstance(data_files, str):
        return fn(data_files)
    if isinstance(data_files, list):
        return [_map_files(f, fn) for f in data_files]
    if isinstance(data_files, dict):
        return {k: _map_files(v, fn) for k, v in data_files.items()}
    return data_files


INDEX_FORMAT = 1  # bump when what is pickled changes


def _index_key(paths: Sequence[Path], options: dict[str, Any]) -> str:
    """Digest of what lm-eval's index of ``paths`` depends on: its version, the roots, and the
    name, size and mtime of every YAML file under them."""
    h = hashlib.sha256(json.dumps([INDEX_FORMAT, lm_eval_version(), [str(p) for p in paths], options], sort_keys=True, default=str).encode())
    for root in paths:
        files = []
        for d, _, names in os.walk(root):
            files += [os.path.join(d, n) for n in names if n.endswith((".yaml", ".yml"))]
        for f in sorted(files):
            st = os.stat(f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


@contextlib.contextmanager
def _index_on_disk(keep: int = 4) -> Any:
    """While it is open, lm-eval's ``TaskIndex.build`` reads its result from the on-disk cache when
    the YAML files it would read are unchanged, else builds it and stores it (atomically; the
    ``keep`` newest are kept). Where lm-eval has no such function, nothing is cached."""
    try:
        from lm_eval.tasks._index import TaskIndex
    except ImportError:  # another lm-eval layout: index as it does
        yield
        return
    original = TaskIndex.__dict__.get("build")
    if not isinstance(original, staticmethod):
        yield
        return
    from fewshot_eval.config import cache_dir
    from fewshot_eval.store.atomic import write_bytes

    def build(paths: Iterable[Path], **options: Any) -> Any:
        paths = [Path(p) for p in paths]
        where = cache_dir() / "lm_eval_index"
        f = where / f"{_index_key(paths, options)}.pkl"
        try:
            with open(f, "rb") as fh:
                index = pickle.load(fh)
            os.utime(f)  # recently used: kept
            return index
        except FileNotFoundError:
            pass
        except Exception as e:  # noqa: BLE001 - a damaged cache file is rebuilt
            log.warning("lm-eval task index cache %s unreadable (%s): rebuilding it", f, e)
        index = original.__func__(paths, **options)
        try:
            where.mkdir(parents=True, exist_ok=True)
            write_bytes(f, pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
            for old in sorted(where.glob("*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)[keep:]:
                old.unlink(missing_ok=True)
        except OSError as e:
            log.warning("lm-eval task index not cached in %s: %s", where, e)
        return index

    TaskIndex.build = staticmethod(build)
    try:
        yield
    finally:
        TaskIndex.build = original


@lru_cache(maxsize=4)
def _catalog(dirs: tuple[str, ...], signature: tuple) -> Catalog:
    return Catalog([Path(d) for d in dirs])


def _signature(dirs: Sequence[Path]) -> tuple:
    """Names, sizes and mtimes of the files in the include dirs: an edited YAML rebuilds the catalog."""
    out = []
    for d in dirs:
        for f in sorted(d.rglob("*")):
            if f.suffix in (".yaml", ".yml", ".py") and f.is_file():
                st = f.stat()
                out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


_RECENT: dict[tuple[str, ...], tuple[float, Catalog]] = {}


def look_again() -> None:
    """The next :func:`catalog` call checks the include dirs for changes (a new plan starts)."""
    _RECENT.clear()


def catalog(search: Optional[Iterable[Path]] = None) -> Catalog:
    """The catalog for the config search path: built once per process and set of include dirs (again
    when a file in an include dir changes; looked at most every 2 s, a plan asks once per job)."""
    key = tuple(str(d) for d in _search(search))
    hit = _RECENT.get(key)
    if hit is not None and time.monotonic() - hit[0] < 2:
        return hit[1]
    dirs = include_dirs([Path(d) for d in key])
    cat = _catalog(tuple(str(d) for d in dirs), _signature(dirs))
    _RECENT[key] = (time.monotonic(), cat)
    return cat

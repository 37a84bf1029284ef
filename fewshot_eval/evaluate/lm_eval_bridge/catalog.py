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
takes ~0.6 s, in the planner and in every job. This module answers what the planner needs without loading any data:
does a name exist (else the close matches), what identifies its configuration (lm_eval's version
and a hash of every config it expands to), which local files it reads, whether its dataset can
be read offline. The evaluation itself is :mod:`fewshot_eval.evaluate.lm_eval_bridge.catalog_runner`.

In YAMLs under ``<config dir>/lm_eval_tasks/``, relative ``dataset_kwargs.data_files`` (and a
relative ``dataset_path`` directory) are taken relative to the YAML file, so a task can point
at data kept next to it.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import glob
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
LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow", "pandas")
_OFFLINE = ("1", "true", "yes", "on")


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


# ------------------------------------------------------------------------- the TaskManager


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
                if any(_under(Path(entry.yaml_path), d) for d in self.dirs):
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


def _under(path: Path, root: Path) -> bool:
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
    rel = [f for f in _files(files) if _relative(f)]
    dp = cfg.get("dataset_path")
    return bool(rel) or (isinstance(dp, str) and _relative(dp) and "/" in dp and dp.startswith("."))


def _files(data_files: Any) -> list[str]:
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, list):
        return [f for f in data_files if isinstance(f, str)]
    if isinstance(data_files, dict):
        return [f for v in data_files.values() for f in _files(v)]
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


# ------------------------------------------------------------------------- identity, fingerprint


def _portable(node: Any, roots: Sequence[tuple[Path, str]], modules: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {str(k): _portable(v, roots, modules) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_portable(v, roots, modules) for v in node]
    if isinstance(node, str) and os.path.isabs(node):
        for root, label in roots:
            try:
                rel = Path(node).relative_to(root)
            except ValueError:
                continue
            mod = Path(node.rpartition(".")[0] + ".py")  # "<dir>/utils.process_docs" -> "<dir>/utils.py"
            key = f"{label}/{rel.as_posix()}"
            if mod.is_file():
                modules[f"{label}/{mod.relative_to(root).as_posix()}"] = _sha(mod)
            return key
        return node
    if isinstance(node, (int, float, bool)) or node is None:
        return node
    return str(node)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _roots(cat: Catalog) -> list[tuple[Path, str]]:
    import lm_eval

    roots = [(Path(lm_eval.__file__).resolve().parent, "lm_eval")]
    roots += [(d, "include") for d in cat.dirs]
    return roots


def task_identity(name: str, search: Optional[Iterable[Path]] = None) -> dict[str, Any]:
    """What identifies one catalog name's configuration: lm-eval's ``metadata.version`` of the name and
    a digest of the config of every entry it expands to (groups and tags: all their members), with
    the ``!function`` modules' contents. Independent of where lm_eval or the config dir is installed."""
    cat = catalog(search)
    return _task_identity(cat, bare(name))


@lru_cache(maxsize=256)
def _task_identity(cat: Catalog, name: str) -> dict[str, Any]:
    roots = _roots(cat)
    modules: dict[str, str] = {}
    configs = {n: _portable(c, roots, modules) for n, c in sorted(cat.closure(name).items())}
    blob = json.dumps({"configs": configs, "modules": modules}, sort_keys=True, default=str)
    own = cat.raw_config(name) or {}
    version = (own.get("metadata") or {}).get("version") if isinstance(own.get("metadata"), dict) else None
    return {"version": version, "config": hashlib.sha256(blob.encode()).hexdigest()[:16]}


def identity(names: Sequence[str], search: Optional[Iterable[Path]] = None) -> dict[str, Any]:
    """The catalog part of a result's identity: lm_eval's version and each catalog task's :func:`task_identity`."""
    tasks = {}
    for n in names:
        if is_catalog(n):
            try:
                tasks[bare(n)] = task_identity(n, search)
            except ConfigError:  # an unknown name: the planning checks put the error on the job's row
                tasks[bare(n)] = {"unknown": True}
    return {"lm_eval": lm_eval_version(), "tasks": tasks}


def _data_file_patterns(cat: Catalog, leaf: str, cfg: dict[str, Any]) -> list[Path]:
    """The local ``dataset_kwargs.data_files`` of a leaf task (globs; relative ones relative to its YAML)."""
    base = cat.sources[leaf].parent if leaf in cat.sources else Path.cwd()
    out = []
    for f in _files((cfg.get("dataset_kwargs") or {}).get("data_files")):
        if "://" in f:
            continue
        p = Path(os.path.expanduser(f))
        out.append(p if p.is_absolute() else base / p)
    return out


def local_files(name: str, search: Optional[Iterable[Path]] = None) -> list[Path]:
    """Local data files the name's tasks read (``dataset_kwargs.data_files``), for the stale check."""
    cat = catalog(search)
    out: set[Path] = set()
    for n, cfg in cat.leaf_configs(bare(name)).items():
        for p in _data_file_patterns(cat, n, cfg):
            out.update(Path(x) for x in glob.glob(str(p)) if Path(x).is_file())
    return sorted(out)


# ------------------------------------------------------------------------- planning checks


# lm-eval's request type of each output type
REQUEST_TYPE = {"multiple_choice": "loglikelihood", "loglikelihood": "loglikelihood",
                "loglikelihood_rolling": "loglikelihood_rolling", "generate_until": "generate_until"}


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in _OFFLINE for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def check_task(name: str, operations: Iterable[str], predictor: str, search: Optional[Iterable[Path]] = None) -> None:
    """What would make a catalog task fail at a job's start, checked at planning: the name exists, the
    predictor supports its request types, local data files exist, and -- offline -- its HuggingFace
    dataset is in the local cache. Raises ConfigError."""
    cat = catalog(search)
    cat.entry(bare(name))
    leaves = sorted(cat.leaf_configs(bare(name)).items())
    ops = set(operations)
    for n, cfg in leaves:
        out_type = str(cfg.get("output_type") or "generate_until")  # lm-eval's default
        need = REQUEST_TYPE.get(out_type, out_type)
        if need not in ops:
            raise ConfigError(
                f"task '{name}': lm-eval task '{n}' is {out_type} (needs {need}), which predictor '{predictor}' "
                f"does not support (it supports {', '.join(sorted(ops)) or 'nothing'}). Use a predictor that does, or leave the task out."
            )
    for n, cfg in leaves:
        _check_dataset(name, n, cfg, cat)


def _check_dataset(name: str, leaf: str, cfg: dict[str, Any], cat: Catalog) -> None:
    if "class" in cfg or cfg.get("custom_dataset"):
        return  # Python tasks and custom loaders: their own business
    path = cfg.get("dataset_path")
    kwargs = dict(cfg.get("dataset_kwargs") or {})
    where = f"task '{name}'" + (f" (lm-eval task '{leaf}', {cat.sources.get(leaf, 'inline config')})" if leaf != bare(name) else f" ({cat.sources.get(leaf, 'inline config')})")
    if not path:
        raise ConfigError(f"{where}: no dataset_path in its config.")
    for p in _data_file_patterns(cat, leaf, cfg):
        if not glob.glob(str(p)):
            raise ConfigError(f"{where}: data file {p} does not exist. Fix dataset_kwargs.data_files in its YAML.")
    if path in LOCAL_BUILDERS or os.path.isdir(os.path.expanduser(str(path))):
        return
    if not _offline():
        return  # it is downloaded by the job (planning downloads nothing)
    if not _dataset_cached(str(path), cfg.get("dataset_name"), kwargs):
        name_part = f", '{cfg['dataset_name']}'" if cfg.get("dataset_name") else ""
        raise ConfigError(
            f"{where}: its dataset '{path}'{name_part} is not in the local HuggingFace cache and downloads are off "
            f"(HF_DATASETS_OFFLINE/HF_HUB_OFFLINE). Download it once where there is network "
            f"(python -c \"import datasets; datasets.load_dataset('{path}'{name_part})\"), or point the task at local files: "
            f"a YAML in <config dir>/{INCLUDE_DIR}/ with `include:` of the catalog YAML, dataset_path: json and "
            f"dataset_kwargs: {{data_files: {{...}}}}."
        )


@lru_cache(maxsize=256)
def _cached(path: str, name: Optional[str], kwargs_json: str) -> bool:
    import datasets

    kwargs = {k: v for k, v in json.loads(kwargs_json).items() if k in ("revision", "data_dir")}
    try:
        datasets.load_dataset_builder(path, name, **kwargs)
        return True
    except Exception:  # noqa: BLE001 - any failure means: not readable offline
        return False


def _dataset_cached(path: str, name: Optional[str], kwargs: dict[str, Any]) -> bool:
    return _cached(path, name, json.dumps(kwargs, sort_keys=True, default=str))


# ------------------------------------------------------------------------- search


def search_catalog(pattern: Optional[str], search: Optional[Iterable[Path]] = None) -> list[tuple[str, str, str]]:
    """(name, kind, where) of every catalog entry matching ``pattern`` (a glob; a plain word matches
    as a substring), tasks, groups and tags alike; where = the YAML relative to lm_eval/tasks or your dir."""
    cat = catalog(search)
    pat = pattern or "*"
    if not any(c in pat for c in "*?["):
        pat = f"*{pat}*"
    import lm_eval

    pkg = Path(lm_eval.__file__).resolve().parent
    out = []
    for name in cat.manager.all_tasks:
        if not fnmatch.fnmatchcase(name.lower(), pat.lower()):
            continue
        entry = cat.index[name]
        src = cat.sources.get(name)
        if src is None:
            where = f"tag of {len(entry.tags)} tasks" if entry.kind.name == "TAG" else "inline"
        else:
            where = f"lm_eval/{src.resolve().relative_to(pkg).as_posix()}" if _under(src, pkg) else str(src)
        out.append((name, entry.kind.name.lower().replace("py_task", "task"), str(where)))
    return out

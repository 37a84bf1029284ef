"""What identifies an lm-eval catalog task (``lm_eval:<name>``) in a result's identity, and which local files it reads.

A catalog task's part of a result's identity (:func:`identity`, used by
:mod:`fewshot_eval.plan.identity`) is lm_eval's version plus, per catalog name, lm-eval's
``metadata.version`` and a digest of the config of every entry the name expands to (a group's
members, a tag's tasks) with the contents of its ``!function`` modules -- independent of where
lm_eval or the config dir is installed. :func:`local_files` lists the local data files the
name's tasks read, for the planner's stale-result check.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import Catalog, bare, catalog, is_catalog, lm_eval_version


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
    return [(cat.lm_eval_dir, "lm_eval"), *((d, "include") for d in cat.dirs)]


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


def local_files(name: str, search: Optional[Iterable[Path]] = None) -> list[Path]:
    """Local data files the name's tasks read (``dataset_kwargs.data_files``), for the stale check."""
    cat = catalog(search)
    out: set[Path] = set()
    for n, cfg in cat.leaf_configs(bare(name)).items():
        for p in cat.data_file_patterns(n, cfg):
            out.update(Path(x) for x in glob.glob(str(p)) if Path(x).is_file())
    return sorted(out)

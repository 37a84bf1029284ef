"""Searching lm-eval's task catalog by name: ``fewshot-eval list catalog [PATTERN]``."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Iterable, Optional

from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import catalog, is_under


def search_catalog(pattern: Optional[str], search: Optional[Iterable[Path]] = None) -> list[tuple[str, str, str]]:
    """(name, kind, where) of every catalog entry matching ``pattern`` (a glob; a plain word matches
    as a substring), tasks, groups and tags alike; where = the YAML relative to lm_eval/tasks or your dir."""
    cat = catalog(search)
    pat = pattern or "*"
    if not any(c in pat for c in "*?["):
        pat = f"*{pat}*"
    pkg = cat.lm_eval_dir
    out = []
    for name in sorted(cat.index):
        if not fnmatch.fnmatchcase(name.lower(), pat.lower()):
            continue
        row = cat.index[name]
        src = cat.source(name)
        if src is None:
            where = f"tag of {len(row.tags)} tasks" if row.kind == "TAG" else "inline"
        else:
            where = f"lm_eval/{src.resolve().relative_to(pkg).as_posix()}" if is_under(src, pkg) else str(src)
        out.append((name, row.kind.lower().replace("py_task", "task"), str(where)))
    return out

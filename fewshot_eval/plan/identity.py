"""A job's identity (everything that can change its numbers), its digest and its data fingerprint."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from fewshot_eval.config import NON_NUMERIC_KEYS
from fewshot_eval.settings import MODEL_NON_IDENTITY


def digest(obj: Any) -> str:
    """Stable sha256 of a JSON-able object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def job_identity(model: dict[str, Any], tasks: list[str], params: dict[str, Any], nshot: int) -> dict[str, Any]:
    """What makes two jobs' numbers comparable: model (minus resources etc.), tasks, eval params, nshot.

    ``model['eval']`` is left out: its values are already in ``params`` (after layering).
    """
    return {
        "model": {k: v for k, v in model.items() if k not in MODEL_NON_IDENTITY and k != "eval"},
        "tasks": list(tasks),
        "params": {k: v for k, v in sorted(params.items()) if k not in NON_NUMERIC_KEYS},
        "nshot": nshot,
    }


@lru_cache(maxsize=4096)
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    st = path.stat()
    return _file_digest(path, st.st_mtime_ns, st.st_size)


def _referenced_files(node: Any, base: Path) -> Iterable[Path]:
    if isinstance(node, dict):
        for v in node.values():
            yield from _referenced_files(v, base)
    elif isinstance(node, list):
        for v in node:
            yield from _referenced_files(v, base)
    elif isinstance(node, str) and 0 < len(node) < 512 and "\n" not in node and "{" not in node:
        candidate = base / node
        try:
            if candidate.is_file():
                yield candidate
        except OSError:
            pass


def task_data_digest(task_def_file: Path) -> str:
    """Digest of a task definition and every local data file it names (paths relative to it)."""
    import yaml

    text = task_def_file.read_text(encoding="utf-8")
    parts = [digest(text)]
    try:
        node = yaml.safe_load(text)
    except yaml.YAMLError:
        node = None
    for f in sorted(set(_referenced_files(node, task_def_file.parent))):
        parts.append(file_digest(f))
    return digest(parts)

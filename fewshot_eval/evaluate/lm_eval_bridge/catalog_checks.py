"""Planning checks of an lm-eval catalog task: what would make it fail at a job's start.

Checked without loading any data: the name exists (else the close matches), the predictor
supports the request type of every task it expands to, its local data files exist, and --
offline (``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE``) -- its HuggingFace dataset is in the local
cache. Called by :func:`fewshot_eval.evaluate.tasks.task_checks.check_catalog_task`.
"""

from __future__ import annotations

import glob
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional

from fewshot_eval.config import ConfigError, env_flag
from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import INCLUDE_DIR, Catalog, bare, catalog

LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow", "pandas")


# lm-eval's request type of each output type
REQUEST_TYPE = {"multiple_choice": "loglikelihood", "loglikelihood": "loglikelihood",
                "loglikelihood_rolling": "loglikelihood_rolling", "generate_until": "generate_until"}


def _offline() -> bool:
    return any(env_flag(v) for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


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
    src = cat.source(leaf) or "inline config"
    where = f"task '{name}'" + (f" (lm-eval task '{leaf}', {src})" if leaf != bare(name) else f" ({src})")
    if not path:
        raise ConfigError(f"{where}: no dataset_path in its config.")
    for p in cat.data_file_patterns(leaf, cfg):
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
            f"(HF_DATASETS_OFFLINE/HF_HUB_OFFLINE). Fetch it where there is network with `fewshot-eval prefetch -m <this sweep's "
            f"overrides>`, or point the task at local files: "
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

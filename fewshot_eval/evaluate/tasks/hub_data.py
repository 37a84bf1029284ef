"""A task's hub dataset split: which files of which repo commit it is, fetching only those, and reading them.

A task definition's ``data: {hf: {path: <org>/<name>, ...}}`` names a dataset repository on the hub. One
split a job reads is a :class:`HubSplit`; its files are what ``datasets`` resolves for that split (the
repo's ``configs`` in its README, or ``data_files`` given in the task definition, relative to the repo)::

    hs = HubSplit("wmt/wmt14", "main", "fr-en", "validation", None)
    commit, files = remote_files(hs)        # online: ['README.md', 'fr-en/validation-00000-of-00001.parquet']
    fetch_split(hs)                         # downloads just those into the hub cache (never the 40M-pair train split)
    rows = read_split(hs)                   # datasets' own loader over the cached snapshot (no network)

A repo whose main branch holds a loading script (which ``datasets`` >= 4 refuses) is read from the
hub's parquet conversion, ``revision: refs/convert/parquet``, as lm-evaluation-harness does. That
branch has no configs: its files are ``<config>/<split>/NNNN.parquet``, so there the task's ``name``
(the config) picks a directory, ``<name>/<split>/*.parquet`` -- or ``data_files`` name the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.tasks.definitions import HFSource, TaskDef

PARQUET_REVISION = "refs/convert/parquet"
# Bare dataset ids the hub no longer serves ("Repository id must be 'namespace/name'") -> where they live now.
MOVED_IDS = {
    "super_glue": "aps/super_glue", "glue": "nyu-mll/glue", "paws-x": "google-research-datasets/paws-x",
    "xnli": "facebook/xnli", "xcopa": "cambridgeltl/xcopa", "wikitext": "Salesforce/wikitext (or EleutherAI/wikitext_document_level)",
    "wmt14": "wmt/wmt14", "wmt16": "wmt/wmt16", "hellaswag": "Rowan/hellaswag", "piqa": "baber/piqa",
    "winogrande": "allenai/winogrande", "openbookqa": "allenai/openbookqa", "ai2_arc": "allenai/ai2_arc",
    "blimp": "nyu-mll/blimp", "lambada": "EleutherAI/lambada_openai", "story_cloze": "LSDSem/story_cloze (a manual download)",
}


@dataclass(frozen=True)
class HubSplit:
    """One split of a hub dataset as a job reads it."""

    repo: str  # <org>/<name>
    revision: Optional[str]  # branch, tag, refs/convert/parquet or commit; None = main
    name: Optional[str]  # the dataset config (None: the repo's default, or data_files)
    split: str  # the hub's split name
    data_files: Optional[str]  # a file or glob relative to the repo (the task definition's data_files for this split)

    def label(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.repo}{rev} {self.name + ' ' if self.name else ''}{self.split}" + (f" ({self.data_files})" if self.data_files else "")


@lru_cache(maxsize=1)
def _builders_dir() -> Optional[Path]:
    """``datasets/packaged_modules`` (found without importing datasets: planning stays fast)."""
    import importlib.util

    spec = importlib.util.find_spec("datasets")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) / "packaged_modules" if locations else None


def is_hub_path(path: str) -> bool:
    """``path`` names a hub repo (not one of datasets' packaged builders like ``json``, not a local directory)."""
    p = Path(path).expanduser()
    builders = _builders_dir()
    builder = "/" not in path and builders is not None and (builders / path / "__init__.py").is_file()
    return not (builder or p.is_absolute() or path.startswith((".", "~")) or p.is_dir())


def check_hub_id(task: TaskDef) -> None:
    """A hub dataset id must be ``<org>/<name>``: the hub refuses bare ids (``super_glue``)."""
    src = task.source
    if not isinstance(src, HFSource) or "/" in src.path or not is_hub_path(src.path):
        return
    moved = MOVED_IDS.get(src.path)
    hint = f" The hub serves it as {moved}." if moved else " Search the hub for its current <org>/<name>."
    raise ConfigError(f"{task.where('data.hf.path')}: '{src.path}' is not a hub dataset id of the form <org>/<name> "
                      f"(the hub refuses bare ids).{hint}")


def hub_split(task: TaskDef, split: str, lang: Optional[str]) -> Optional[HubSplit]:
    """The hub split a job reads for our ``split`` (in ``lang``), or None when the task's data is not a hub repo
    (local files, a builder over files, a manual download)."""
    src = task.source
    manual = any("$" in v for v in (src.data_files or {}).values()) if isinstance(src, HFSource) else False
    if not isinstance(src, HFSource) or manual or src.data_dir or not is_hub_path(src.path):
        return None  # a manual download ($VARS) or a data_dir: read by task_data as a builder over local files
    fmt = (lambda s: s.replace("{lang}", lang or "")) if lang else (lambda s: s)
    theirs = src.splits[split]
    name = fmt(src.name) if src.name else None
    files = (src.data_files or {}).get(theirs)
    if src.data_files and files is None:
        raise ConfigError(f"{task.where('data.hf.data_files')}: no entry for split '{theirs}'. Keys: {', '.join(src.data_files)}.")
    if files is None and (src.revision or "").startswith(PARQUET_REVISION):
        # the hub's parquet conversion has no configs: config `name` is a directory, <config>/<split>/NNNN.parquet
        return HubSplit(src.path, src.revision, None, theirs, f"{name or 'default'}/{theirs}/*.parquet")
    return HubSplit(src.path, src.revision, name, theirs, fmt(files) if files else None)


def _repo_path(url: str, repo: str) -> str:
    """``hf://datasets/<repo>@<rev>/<path>`` -> ``<path>``."""
    head = f"hf://datasets/{repo}@"
    if not url.startswith(head):
        raise ConfigError(f"hub dataset {repo}: a data file outside the repo ({url}).")
    return url[len(head):].split("/", 1)[1]


def remote_files(hs: HubSplit) -> tuple[str, list[str], dict[str, Optional[int]]]:
    """(commit, the files of the split plus the repo's metadata files, every repo file -> size): asks the hub."""
    import datasets

    from fewshot_eval.evaluate.hub_cache import DATASET_METADATA, HubError, repo_files, resolve_commit

    commit = resolve_commit(hs.repo, "dataset", hs.revision)
    listing = repo_files(hs.repo, "dataset", commit)
    scripts = [f for f in listing if "/" not in f and f.endswith(".py")]
    try:
        builder = datasets.load_dataset_builder(hs.repo, hs.name, revision=commit,
                                                data_files={hs.split: hs.data_files} if hs.data_files else None)
    except Exception as e:  # noqa: BLE001 - one line saying what to do
        if scripts:
            raise HubError(f"hub dataset {hs.label()}: the repo holds a loading script ({scripts[0]}), which datasets >= 4 "
                           f"does not run. Read its parquet conversion: revision: refs/convert/parquet and data_files of that "
                           f"branch ('<config>/<split>/*.parquet').") from None
        raise HubError(f"hub dataset {hs.label()}: datasets cannot resolve its files ({type(e).__name__}: "
                       f"{(str(e).splitlines() or [''])[0]}).") from None
    data_files = builder.config.data_files or {}
    if hs.split not in data_files or not data_files[hs.split]:
        raise HubError(f"hub dataset {hs.label()}: no files for split '{hs.split}' (splits: {', '.join(data_files) or 'none'}).")
    files = [_repo_path(str(u), hs.repo) for u in data_files[hs.split]]
    meta = [m for m in DATASET_METADATA if m in listing]
    return commit, meta + files, listing


def fetch_split(hs: HubSplit) -> Path:
    """Download the split's files (and the repo's metadata) into the hub cache; the snapshot dir."""
    from fewshot_eval.evaluate.hub_cache import fetch

    commit, files, _ = remote_files(hs)
    return fetch(hs.repo, "dataset", hs.revision, commit, files)


def _card_patterns(snapshot: Path, hs: HubSplit) -> Optional[dict[str, list[str]]]:
    """The split's data files as the repo's dataset card declares them for the config (datasets' own parsing),
    or None when the card declares no configs (datasets then infers the layout from the files)."""
    from datasets.data_files import sanitize_patterns
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    readme = snapshot / "README.md"
    if not readme.is_file():
        return None
    configs = MetadataConfigs.from_dataset_card_data(DatasetCard.load(readme).data)
    name = hs.name or configs.get_default_config_name()
    files = (configs.get(name) or {}).get("data_files") if name else None
    patterns = sanitize_patterns(files) if files else {}
    return {hs.split: patterns[hs.split]} if hs.split in patterns else None


@lru_cache(maxsize=512)
def _local(hs: HubSplit, snapshot: str, mtime: float) -> Optional[tuple[str, ...]]:
    """The split's files in a cached snapshot, resolved by datasets as it would (only this split: the others
    are not in the cache)."""
    import datasets

    try:
        patterns = {hs.split: hs.data_files} if hs.data_files else _card_patterns(Path(snapshot), hs)
        builder = datasets.load_dataset_builder(snapshot, hs.name, data_files=patterns)
        files = (builder.config.data_files or {}).get(hs.split)
    except Exception:  # noqa: BLE001 - not readable from the cache
        return None
    return tuple(str(f) for f in files) if files else None


def local_files(hs: HubSplit) -> Optional[tuple[Path, tuple[str, ...]]]:
    """(snapshot dir, the split's files in it) when the hub cache holds the split (no network), else None."""
    from fewshot_eval.evaluate.hub_cache import cached_snapshot, forced_offline

    snap = cached_snapshot(hs.repo, "dataset", hs.revision)
    if snap is None:
        return None
    with forced_offline():
        files = _local(hs, str(snap), snap.stat().st_mtime)
    return (snap, files) if files else None


def read_split(hs: HubSplit) -> list[dict[str, Any]]:
    """The rows of a hub split: from the hub cache when it holds the split (fetched first when online and it
    does not). Offline and not in the hub cache: ``datasets``' own cache of an earlier ``load_dataset``."""
    import datasets

    from fewshot_eval.evaluate.hub_cache import offline_env

    found = local_files(hs)
    if found is None and offline_env():
        kwargs: dict[str, Any] = {"revision": hs.revision} if hs.revision else {}
        if hs.data_files:
            kwargs["data_files"] = {hs.split: hs.data_files}
        ds = datasets.load_dataset(hs.repo, hs.name, split=hs.split, **kwargs)
        return [dict(row) for row in ds]
    if found is None:
        fetch_split(hs)
        _local.cache_clear()
        found = local_files(hs)
        if found is None:
            raise ConfigError(f"hub dataset {hs.label()}: fetched, but datasets cannot read the split from {hs.repo}'s cached snapshot.")
    snap, files = found
    ds = datasets.load_dataset(str(snap), hs.name, data_files={hs.split: list(files)}, split=hs.split)
    return [dict(row) for row in ds]

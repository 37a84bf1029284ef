"""The HuggingFace hub cache that jobs read: which commit a revision names, which files are there,
fetching the missing ones, and HF offline mode for a job whose inputs are all cached.

Everything goes through ``huggingface_hub`` (``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE`` and
``HF_TOKEN`` apply as usual); a repo is fetched file by file at a resolved commit:

    commit = resolve_commit("EleutherAI/pythia-160m", "model", "step1000")   # the hub's refs: branches, tags, refs/convert/*
    files = repo_files("EleutherAI/pythia-160m", "model", commit)            # path -> size, as the hub reports it
    fetch("EleutherAI/pythia-160m", "model", "step1000", commit, model_files(files))

``fetch`` records ``<repo cache>/refs/<revision>`` = commit (the cache's own layout), so that
``from_pretrained(..., revision="step1000")`` and :func:`cached_snapshot` find the snapshot offline;
revisions are resolved through the refs list (``/api/<type>s/<id>/refs``), which also works for
``refs/convert/parquet`` on servers whose revision routes do not take a ``/`` in a revision.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from fewshot_eval.config import ConfigError, env_flag

HEX40 = re.compile(r"[0-9a-f]{40}")
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
# Repo metadata a local load of a dataset snapshot reads (configs, features), fetched with its data files.
DATASET_METADATA = ("README.md", ".huggingface.yaml", "dataset_infos.json")
_WEIGHTS_BIN = re.compile(r"pytorch_model.*\.bin")


class HubError(ConfigError):
    """A repo, revision or file the hub does not give us: one line saying what and what to do."""


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def offline_env() -> Optional[str]:
    """The first HF offline variable set in this environment, or None."""
    return next((v for v in OFFLINE_VARS if env_flag(v)), None)


def hub_error(what: str, e: BaseException, repo_request: bool = False) -> HubError:
    """One line for a failed hub request: a missing/gated/private repo, a missing revision or file, no network.
    ``repo_request``: a request about the repo itself, where any 404 means the repo is not there (for us)."""
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    where = endpoint()
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, GatedRepoError):
        return HubError(f"{what}: a gated repo on {where}, and this account has no access: accept its terms on the hub "
                        f"page, then log in (`hf auth login`) or export HF_TOKEN.")
    if isinstance(e, RepositoryNotFoundError) or (repo_request and isinstance(e, HfHubHTTPError) and status in (401, 404)):
        return HubError(f"{what}: not found on {where} (or private/gated without access). Check the id; for a private or "
                        f"gated repo log in (`hf auth login`) or export HF_TOKEN.")
    if isinstance(e, RevisionNotFoundError):
        return HubError(f"{what}: the revision is not on {where}. Check the setting's revision.")
    if isinstance(e, EntryNotFoundError):
        return HubError(f"{what}: a file is missing on {where} ({_first_line(e)}).")
    if isinstance(e, OfflineModeIsEnabled):
        return HubError(f"{what}: HuggingFace offline mode is on here, so nothing can be fetched. Unset {offline_env() or 'HF_HUB_OFFLINE'}.")
    if isinstance(e, HfHubHTTPError):
        return HubError(f"{what}: {where} answered {_first_line(e)}.")
    return HubError(f"{what}: cannot reach {where} ({type(e).__name__}: {_first_line(e)}). Run this where there is network "
                    f"(a login node), or point HF_ENDPOINT at a reachable hub mirror.")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _api() -> Any:
    from huggingface_hub import HfApi

    return HfApi()


def resolve_commit(repo_id: str, repo_type: str, revision: Optional[str]) -> str:
    """The commit a revision (branch, tag, ``refs/convert/...``, ``refs/pr/N``, or a commit) names on the hub."""
    rev = revision or "main"
    if HEX40.fullmatch(rev):
        return rev
    what = f"hub {repo_type} {repo_id}"
    try:
        refs = _api().list_repo_refs(repo_id, repo_type=repo_type, include_pull_requests=rev.startswith("refs/pr/"))
    except Exception as e:  # noqa: BLE001 - every failure becomes one line
        raise hub_error(what, e, repo_request=True) from None
    groups = [("branch", refs.branches), ("tag", refs.tags), ("convert", refs.converts), ("pull request", refs.pull_requests or [])]
    for _, group in groups:
        for ref in group:
            if rev in (ref.ref, ref.name):
                return ref.target_commit
    names = [r.ref for _, g in groups for r in g]
    raise HubError(f"{what}: no revision '{rev}' on {endpoint()}. Its refs: {', '.join(names) or 'none'}.")


def repo_files(repo_id: str, repo_type: str, commit: str) -> dict[str, Optional[int]]:
    """Every file of the repo at ``commit`` -> its size in bytes (None where the hub does not say)."""
    from huggingface_hub.hf_api import RepoFile

    try:
        tree = _api().list_repo_tree(repo_id, repo_type=repo_type, revision=commit, recursive=True)
        return {f.path: getattr(f, "size", None) for f in tree if isinstance(f, RepoFile)}
    except Exception as e:  # noqa: BLE001
        raise hub_error(f"hub {repo_type} {repo_id}@{commit[:12]}", e) from None


def model_files(files: Sequence[str]) -> list[str]:
    """What ``from_pretrained`` of a causal LM reads from a repo's top level: configs, tokenizer files,
    remote code, and the weights -- the safetensors files when there are any, else ``pytorch_model*.bin``
    (never both, and never the TF/Flax/ONNX/GGUF copies or sub-folders)."""
    top = [f for f in files if "/" not in f]
    meta = [f for f in top if f.endswith((".json", ".txt", ".model", ".tiktoken", ".jinja", ".py")) or f.startswith("tokenizer")]
    weights = [f for f in top if f.endswith(".safetensors")] or [f for f in top if _WEIGHTS_BIN.fullmatch(f)]
    return sorted(set(meta) | set(weights))


def storage_dir(repo_id: str, repo_type: str) -> Path:
    """``<hub cache>/<models|datasets>--<org>--<name>`` (huggingface_hub's cache layout)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)


def cached_commit(repo_id: str, repo_type: str, revision: Optional[str]) -> Optional[str]:
    """The commit the local cache records for ``revision`` (no network), or None."""
    rev = revision or "main"
    if HEX40.fullmatch(rev):
        return rev if (storage_dir(repo_id, repo_type) / "snapshots" / rev).is_dir() else None
    try:
        commit = (storage_dir(repo_id, repo_type) / "refs" / rev).read_text().strip()
    except OSError:
        return None
    return commit if HEX40.fullmatch(commit) else None


def cached_snapshot(repo_id: str, repo_type: str, revision: Optional[str]) -> Optional[Path]:
    """The cached snapshot dir of ``revision``, or None when the cache has no record of it."""
    commit = cached_commit(repo_id, repo_type, revision)
    if commit is None:
        return None
    path = storage_dir(repo_id, repo_type) / "snapshots" / commit
    return path if path.is_dir() else None


def record_ref(repo_id: str, repo_type: str, revision: Optional[str], commit: str) -> None:
    """Write ``refs/<revision>`` = commit, as huggingface_hub does when it downloads by revision name."""
    from fewshot_eval.store.atomic import write_text

    rev = revision or "main"
    if HEX40.fullmatch(rev):
        return
    path = storage_dir(repo_id, repo_type) / "refs" / rev
    if path.is_file() and path.read_text().strip() == commit:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, commit)


def missing_files(repo_id: str, repo_type: str, commit: str, files: Sequence[str]) -> list[str]:
    """Those of ``files`` that the cached snapshot of ``commit`` lacks."""
    snap = storage_dir(repo_id, repo_type) / "snapshots" / commit
    return [f for f in files if not (snap / f).is_file()]


def fetch(repo_id: str, repo_type: str, revision: Optional[str], commit: str, files: Sequence[str],
          on_file: Optional[Callable[[str, bool], None]] = None) -> Path:
    """Download those of ``files`` the cache lacks (at ``commit``; a half-downloaded file resumes), then record
    ``revision`` -> ``commit``. ``on_file(path, fetched)`` is called per file. Returns the snapshot dir."""
    from huggingface_hub import hf_hub_download

    todo = set(missing_files(repo_id, repo_type, commit, files))
    for f in files:
        if f in todo:
            try:
                hf_hub_download(repo_id, f, repo_type=repo_type, revision=commit)
            except Exception as e:  # noqa: BLE001
                raise hub_error(f"hub {repo_type} {repo_id}@{commit[:12]} file {f}", e) from None
        if on_file is not None:
            on_file(f, f in todo)
    record_ref(repo_id, repo_type, revision, commit)
    return storage_dir(repo_id, repo_type) / "snapshots" / commit


def weights_cached(repo_id: str, revision: Optional[str]) -> bool:
    """A hub model's snapshot of ``revision`` holds a config and complete weights (no network)."""
    import json

    snap = cached_snapshot(repo_id, "model", revision)
    if snap is None or not (snap / "config.json").is_file():
        return False
    names = [p.name for p in snap.iterdir()]
    indexes = [n for n in names if n.endswith(".index.json")]
    for index in indexes:  # sharded weights: every shard of one index
        try:
            shards = set(json.loads((snap / index).read_text()).get("weight_map", {}).values())
        except (OSError, ValueError):
            continue
        if shards and all((snap / s).is_file() for s in shards):
            return True
    return not indexes and any(n.endswith(".safetensors") or _WEIGHTS_BIN.fullmatch(n) for n in names)


def _flags_from_env() -> dict[tuple[str, str], bool]:
    """The offline flags ``huggingface_hub`` and ``datasets`` compute from the environment when imported."""
    hub = env_flag("HF_HUB_OFFLINE") or env_flag("TRANSFORMERS_OFFLINE")
    data = hub if os.environ.get("HF_DATASETS_OFFLINE") is None else env_flag("HF_DATASETS_OFFLINE")
    return {("huggingface_hub.constants", "HF_HUB_OFFLINE"): hub, ("datasets.config", "HF_HUB_OFFLINE"): data,
            ("datasets.config", "HF_DATASETS_OFFLINE"): data}


@contextlib.contextmanager
def forced_offline(on: bool = True) -> Iterator[None]:
    """HuggingFace offline mode for what runs inside (``on``): the variables in the environment (for child
    processes and libraries imported meanwhile) and the flags of ``huggingface_hub``/``datasets`` already
    imported (they read the variables at import). Restored afterwards -- also in those imported meanwhile."""
    if not on:
        yield
        return
    saved_env = {v: os.environ.get(v) for v in OFFLINE_VARS}
    saved_flags = {}
    for v in OFFLINE_VARS:
        os.environ[v] = "1"
    for module, name in _flags_from_env():
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            saved_flags[(module, name)] = getattr(mod, name)
            setattr(mod, name, True)
    try:
        yield
    finally:
        for v, value in saved_env.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value
        for (module, name), value in _flags_from_env().items():
            mod = sys.modules.get(module)
            if mod is not None and hasattr(mod, name):
                setattr(mod, name, saved_flags.get((module, name), value))

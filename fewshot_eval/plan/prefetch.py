"""Fetch what a sweep's jobs will read from the HuggingFace hub into the cache they use, before they run.

    fewshot-eval prefetch -m models=pythia tasks=superglue nshot=0,32              # on the login node
    fewshot-eval prefetch -m models=pythia tasks=superglue nshot=0,32 dry_run=true # what it would fetch, sizes
    fewshot-eval -m models=pythia tasks=superglue nshot=0,32 prefetch=true        # fetch, then launch

The inputs of every job the plan would run (or reports as an error, e.g. offline and not cached):

* a hub model (a predictor that loads HuggingFace weights, ``weights`` a hub id): its config, tokenizer and
  weight files at the setting's ``revision`` (checkpoint sweeps: every revision), resolved to a commit that
  the cache records (``refs/<revision>``), which results then carry in their ``weights`` field;
* a task definition's hub dataset: only the files of the splits (configs, languages) jobs read, through
  :mod:`fewshot_eval.evaluate.tasks.hub_data` -- never WMT's training set;
* an lm-eval catalog task's dataset: ``datasets.load_dataset`` as lm-eval calls it (all its splits).

Fetching is idempotent and resumable (a file in the cache is not fetched again; a cut download resumes).
:func:`inputs_cached` is the planner's test for "this job needs no network": such a job runs with
HuggingFace offline mode forced (``hf_offline=true``) unless its model setting says ``offline_when_cached: false``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TextIO, Union

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import bare, is_catalog
from fewshot_eval.evaluate.tasks.hub_data import HubSplit


@dataclass(frozen=True)
class HubModel:
    repo: str
    revision: Optional[str]

    def label(self) -> str:
        return f"model {self.repo}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class CatalogData:
    """The dataset of one lm-eval catalog task, as lm-eval loads it."""

    task: str
    path: str
    name: Optional[str]
    kwargs: str  # JSON of dataset_kwargs

    def label(self) -> str:
        return f"lm-eval {self.task}: dataset {self.path}" + (f" {self.name}" if self.name else "")


Input = Union[HubModel, HubSplit, CatalogData]


def _label(item: Input) -> str:
    return item.label() if not isinstance(item, HubSplit) else f"dataset {item.label()}"


# ---- what a job reads ------------------------------------------------------------------------
def hub_model(model: dict[str, Any], params: dict[str, Any], search: Sequence[Path] = ()) -> Optional[HubModel]:
    """The hub model a job loads, or None (a baseline, a served model, local or built-in weights).

    Whether the predictor loads HuggingFace weights is its class attribute ``loads_hf_weights``."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_capability
    from fewshot_eval.settings import is_local_weights

    weights = model.get("weights")
    if not weights or weights == "tiny-gpt2" or is_local_weights(str(weights)):
        return None
    loads = predictor_capability(params.get("predictor") or model.get("predictor"), "loads_hf_weights", list(search) or config_dirs())
    return HubModel(str(weights), model.get("revision")) if loads else None


def task_inputs(task_names: Sequence[str], params: dict[str, Any], search: Sequence[Path]) -> list[Input]:
    """The hub dataset splits and lm-eval datasets the tasks of one task setting read under ``params``."""
    from fewshot_eval.evaluate.tasks.definitions import load_task_def
    from fewshot_eval.evaluate.tasks.hub_data import check_hub_id, hub_split
    from fewshot_eval.evaluate.tasks.selection import select_languages
    from fewshot_eval.evaluate.tasks.task_checks import hf_mirrored, needed_splits

    out: list[Input] = []
    for name in task_names:
        if is_catalog(name):
            out += catalog_inputs(name, search)
            continue
        td = load_task_def(name, search)
        langs, train_lang = select_languages(td, params)
        if hf_mirrored(td, params, langs, train_lang):
            continue
        check_hub_id(td)
        for split, lang in needed_splits(td, params, langs, train_lang):
            hs = hub_split(td, split, lang if td.languages else None)
            if hs is not None:
                out.append(hs)
    return out


def catalog_inputs(name: str, search: Sequence[Path]) -> list[CatalogData]:
    """The hub datasets the lm-eval tasks behind ``lm_eval:<name>`` load (local files and Python tasks: none)."""
    import os

    from fewshot_eval.evaluate.lm_eval_bridge.catalog_checks import LOCAL_BUILDERS
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import catalog

    out = []
    for leaf, cfg in sorted(catalog(search).leaf_configs(bare(name)).items()):
        path = cfg.get("dataset_path")
        if not path or "class" in cfg or cfg.get("custom_dataset") or path in LOCAL_BUILDERS or os.path.isdir(os.path.expanduser(str(path))):
            continue
        kwargs = json.dumps(cfg.get("dataset_kwargs") or {}, sort_keys=True, default=str)
        out.append(CatalogData(leaf, str(path), cfg.get("dataset_name"), kwargs))
    return out


def job_inputs(unit: Any, search: Sequence[Path]) -> list[Input]:
    """What one planned job (a :class:`~fewshot_eval.plan.unit.JobUnit`) reads from the hub."""
    model = hub_model(unit.model, unit.params, search)
    return ([model] if model else []) + task_inputs(unit.task["tasks"], unit.params, search)


# ---- in the cache? (no network) --------------------------------------------------------------
def is_cached(item: Input) -> bool:
    """The local caches hold ``item`` (nothing is fetched or asked)."""
    from fewshot_eval.evaluate.hub_cache import weights_cached
    from fewshot_eval.evaluate.tasks.hub_data import local_files

    if isinstance(item, HubModel):
        return weights_cached(item.repo, item.revision)
    if isinstance(item, HubSplit):
        return local_files(item) is not None or _legacy_cached(item.repo)
    return _catalog_cached(item)


def _legacy_cached(repo: str) -> bool:
    """The ``datasets`` cache holds a prepared copy from an earlier ``load_dataset`` (jobs read it offline as before)."""
    import os

    home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets").expanduser()
    return (datasets_cache / repo.replace("/", "___")).is_dir()


def _catalog_cached(item: CatalogData) -> bool:
    from fewshot_eval.evaluate.hub_cache import forced_offline
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_checks import _dataset_cached

    with forced_offline():
        return _dataset_cached(item.path, item.name, json.loads(item.kwargs))


def inputs_cached(unit: Any, search: Sequence[Path]) -> bool:
    """Every hub input of the job is in the local caches: it can run with HuggingFace offline mode."""
    return model_cached(unit.model, unit.params, search) and tasks_cached(unit.task["tasks"], unit.params, search)


def model_cached(model: dict[str, Any], params: dict[str, Any], search: Sequence[Path]) -> bool:
    """The model part of :func:`inputs_cached` (a planner asks it once per model, not per model x task)."""
    try:
        item = hub_model(model, params, search)
        return item is None or _cached_once(item)
    except ConfigError:  # the planning checks report it on the job's row
        return False


def tasks_cached(task_names: Sequence[str], params: dict[str, Any], search: Sequence[Path]) -> bool:
    """The tasks' part of :func:`inputs_cached`."""
    try:
        return all(_cached_once(i) for i in task_inputs(task_names, params, search))
    except ConfigError:
        return False


@lru_cache(maxsize=4096)
def _cached_once(item: Input) -> bool:
    return is_cached(item)


def forget_cache_state() -> None:
    """Answers about the caches are asked again (each plan starts with this, and after fetching)."""
    from fewshot_eval.evaluate.lm_eval_bridge import catalog_checks
    from fewshot_eval.evaluate.tasks import hub_data
    from fewshot_eval.plan import unit

    _cached_once.cache_clear()
    hub_data._local.cache_clear()
    catalog_checks._cached.cache_clear()
    unit._WEIGHTS.clear()


# ---- fetching --------------------------------------------------------------------------------
@dataclass
class Planned:
    """One input: its commit and files (sizes as the hub reports them), which are missing here."""

    item: Input
    commit: Optional[str] = None
    files: tuple[str, ...] = ()
    sizes: tuple[Optional[int], ...] = ()
    missing: tuple[str, ...] = ()
    whole: bool = False  # an lm-eval dataset: downloaded whole by datasets (cached or not)
    error: str = ""

    def size(self, names: Sequence[str]) -> Optional[int]:
        by = dict(zip(self.files, self.sizes))
        known = [by.get(n) for n in names]
        return None if any(s is None for s in known) else sum(known)  # type: ignore[arg-type]


def resolve(item: Input) -> Planned:
    """Ask the hub what ``item`` is (commit, files, sizes) and see what the cache lacks."""
    from fewshot_eval.evaluate.hub_cache import missing_files, model_files, repo_files, resolve_commit
    from fewshot_eval.evaluate.tasks.hub_data import remote_files

    try:
        if isinstance(item, HubModel):
            commit = resolve_commit(item.repo, "model", item.revision)
            listing = repo_files(item.repo, "model", commit)
            files = model_files(list(listing))
            if "config.json" not in files:
                raise ConfigError(f"hub model {item.repo}@{commit[:12]}: no config.json, not a transformers model repo.")
            repo, kind = item.repo, "model"
        elif isinstance(item, HubSplit):
            commit, files, listing = remote_files(item)
            repo, kind = item.repo, "dataset"
        else:
            return Planned(item, whole=True, missing=() if _catalog_cached(item) else ("*",))
    except ConfigError as e:
        return Planned(item, error=str(e))
    return Planned(item, commit, tuple(files), tuple(listing.get(f) for f in files), tuple(missing_files(repo, kind, commit, files)))


def fetch(p: Planned, on_file: Callable[[str, bool], None]) -> None:
    """Download what ``p`` lacks and record its revision's commit in the cache."""
    from fewshot_eval.evaluate import hub_cache

    item = p.item
    if isinstance(item, CatalogData):
        if p.missing:
            _load_catalog_dataset(item)
        on_file("*", bool(p.missing))
        return
    repo, kind = (item.repo, "model") if isinstance(item, HubModel) else (item.repo, "dataset")
    assert p.commit is not None
    hub_cache.fetch(repo, kind, item.revision, p.commit, p.files, on_file)


def _load_catalog_dataset(item: CatalogData) -> None:
    import datasets

    from fewshot_eval.evaluate.hub_cache import hub_error

    try:
        datasets.load_dataset(item.path, item.name, **json.loads(item.kwargs))
    except Exception as e:  # noqa: BLE001 - one line
        raise hub_error(_label(item), e) from None


def _mb(n: Optional[int]) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def collect(jobs: Sequence[Any], search: Sequence[Path]) -> tuple[list[Input], list[str]]:
    """(the distinct hub inputs of ``jobs`` -- the ones that would run --, problems finding them)."""
    seen: dict[Input, None] = {}
    problems: dict[str, None] = {}
    for j in jobs:
        try:
            for i in job_inputs(j.unit, search):
                seen.setdefault(i, None)
        except ConfigError as e:
            problems.setdefault(str(e), None)
    return list(seen), list(problems)


def check_online(what: str) -> None:
    from fewshot_eval.evaluate.hub_cache import offline_env

    var = offline_env()
    if var:
        raise ConfigError(f"{what} downloads from the hub, but {var}=1 is set here. Run it where there is network with "
                          f"{var}=0 (jobs whose inputs are all cached run offline by themselves).")


def prefetch(jobs: Sequence[Any], search: Sequence[Path], dry_run: bool = False, out: TextIO = sys.stdout, what: str = "prefetch") -> int:
    """Fetch (``dry_run``: list) the hub inputs of ``jobs`` (planned jobs that would run, or error rows); print
    one line per input and a summary.
    Returns 0, or 2 when an input could not be resolved or fetched (each named on its own line)."""
    inputs, problems = collect(jobs, search)
    err = sys.stderr
    for msg in problems:
        print(f"fewshot-eval: error: {msg}", file=err)
    if not inputs:
        print("prefetch: the planned jobs read nothing from the hub (local files, built-in or cached models only).", file=out)
        return 2 if problems else 0
    check_online(what)
    print(f"prefetch: {len(inputs)} hub input{'s' if len(inputs) != 1 else ''} of {len(jobs)} jobs; asking {_endpoint()} ...", file=out)
    planned = [resolve(i) for i in inputs]
    failed = [p for p in planned if p.error]
    for p in failed:
        print(f"fewshot-eval: error: {p.error}", file=err)
    ok = [p for p in planned if not p.error]
    cached = [p for p in ok if not p.missing]
    todo = [p for p in ok if p.missing]
    for p in ok:
        print(f"  {_describe(p, dry_run)}", file=out)
    sizes = [p.size(p.missing) for p in todo if not p.whole]
    total = None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)
    if dry_run:
        whole = [p for p in todo if p.whole]
        more = f" and {len(whole)} lm-eval dataset(s) of unknown size" if whole else ""
        print(f"Dry run: {len(cached)} already cached, {len(todo)} to fetch ({_mb(total)}{more}), {len(failed)} failed. Nothing fetched.", file=out)
        return 2 if failed or problems else 0
    fetched_bytes, fetched_files = _fetch_all(todo, total, failed)
    print(f"prefetch: {len(cached)} already cached ({_mb(sum(p.size(p.files) or 0 for p in cached))}), "
          f"{len(todo) - len([p for p in failed if p in todo])} fetched ({fetched_files} files, {_mb(fetched_bytes)}), "
          f"{len(failed)} failed.", file=out)
    if not failed and not problems:
        print("Every hub input of these jobs is in the cache now: they run with HuggingFace offline mode.", file=out)
    return 2 if failed or problems else 0


def _endpoint() -> str:
    from fewshot_eval.evaluate.hub_cache import endpoint

    return endpoint()


def _describe(p: Planned, dry_run: bool) -> str:
    label = _label(p.item)
    if p.whole:
        return f"{label}: {'already cached' if not p.missing else ('would load it whole (all splits)' if dry_run else 'loading it whole (all splits)')}"
    at = f" -> {p.commit[:12]}" if p.commit else ""
    if not p.missing:
        return f"{label}{at}: already cached ({len(p.files)} files, {_mb(p.size(p.files))})"
    verb = "would fetch" if dry_run else "fetching"
    return f"{label}{at}: {verb} {len(p.missing)} of {len(p.files)} files ({_mb(p.size(p.missing))})"


def _fetch_all(todo: list[Planned], total: Optional[int], failed: list[Planned]) -> tuple[int, int]:
    """Fetch every planned input with one progress bar (files; bytes when the hub gave every size)."""
    from tqdm import tqdm

    from fewshot_eval.progress import is_tty

    done_bytes, done_files = 0, 0
    n_files = sum(len(p.missing) for p in todo)
    with tqdm(total=total if total is not None else n_files, unit="B" if total is not None else "file", unit_scale=total is not None,
              desc="prefetch", disable=not is_tty(sys.stderr), file=sys.stderr) as bar:
        for p in todo:
            def on_file(name: str, fetched: bool, p: Planned = p) -> None:
                nonlocal done_bytes, done_files
                if not fetched:
                    return
                size = p.size([name]) if name != "*" else None
                done_files += 1
                done_bytes += size or 0
                bar.update(size if total is not None else 1)
            try:
                fetch(p, on_file)
            except ConfigError as e:
                p.error = str(e)
                failed.append(p)
                print(f"fewshot-eval: error: {e}", file=sys.stderr)
    return done_bytes, done_files

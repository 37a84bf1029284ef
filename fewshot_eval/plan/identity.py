"""A result's identity (everything that can change its numbers), its digest and its fingerprints.

This module is the one owner of the formula; the planner, the job and ``recalc`` all call it.

* **Identity** -- model (minus resources etc.), tasks, evaluation params (minus batch size,
  device ...), nshot. Its digest names the result dir (``<nshot>shot.<digest[:8]>``).
* **Stable as the code grows.** The keys that were in the identity in release 0.1.0 are
  always in it (``PARAMS_0_1_0``, ``MODEL_0_1_0``), so every 0.1.0 result keeps its digest.
  A key added later goes into ``NEUTRAL_PARAMS`` / ``NEUTRAL_MODEL`` with its *neutral*
  value -- the value that reproduces what the code did before the key existed -- and enters
  the identity only when a job sets another value. Adding a parameter therefore re-keys
  nothing, while setting it (or changing its default away from neutral) gives a new result.
  A key in neither table is a programming error (tests/test_upgrades.py checks the tables).
* **Fingerprint** -- identity digest + the task definitions and every local data file they
  read (``{lang}`` paths expanded for each language). If the data changes under a result, the
  result becomes ``stale``. Format 2 is ``"2:<sha256>"``; results of 0.1.0 carry the format-1
  fingerprint (``{lang}`` files left out), which is still accepted for them.
* **Weights fingerprint** -- recorded beside the fingerprint: for a local checkpoint dir, its
  file names, sizes and mtimes (never the bytes); for a hub id, the resolved commit from the
  local HuggingFace cache; for ``tiny-gpt2``, its builder version. A replaced checkpoint makes
  results ``stale``; an unknown one (hub cache empty) is not compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from fewshot_eval.config import NON_NUMERIC_KEYS, ConfigError, find_config_file, yaml_safe_load
from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import is_catalog
from fewshot_eval.settings import is_local_weights

# ---- which keys are in the identity --------------------------------------------------------

# Evaluation params in every identity since 0.1.0 (null values included).
PARAMS_0_1_0: tuple[str, ...] = (
    "balanced", "calibration_options", "calibrator", "description", "dtype", "eval_set", "languages",
    "max_length", "n_eval_samples", "predictor", "scoring", "seed", "templates", "train_languages",
    "train_sep", "train_set", "unconditional_prompt",
)
# Model-setting fields in every identity since 0.1.0.
MODEL_0_1_0: tuple[str, ...] = ("predictor", "weights", "revision")
# Model-setting fields that cannot change the numbers.
# ``checkpoints`` is expanded into one setting per checkpoint, whose weights/revision are in the identity.
# parallel: sharding/engine parallelism changes numbers only within float tolerance; server: where, not what.
# offline_when_cached: whether the job may use the network, not what it computes.
MODEL_NON_IDENTITY: frozenset[str] = frozenset({"job", "resources", "max_parallel", "description", "name", "eval", "slurm",
                                                "checkpoints", "parallel", "server", "offline_when_cached"})

# Keys added after 0.1.0 -> their neutral value (the behaviour before they existed).
NEUTRAL_PARAMS: dict[str, Any] = {
    "demo_sampling": "per_trial",
    # generation (task kind: generate); they change no result of a choice task
    "max_new_tokens": None,
    "until": None,
    "do_sample": False,
    "temperature": 1.0,
    # more metrics from the same rows: the other numbers stay, but the result holds more (its own result dir)
    "extra_metrics": None,
}
NEUTRAL_MODEL: dict[str, Any] = {"chat": None, "hf_overrides": {}}


class IdentityError(AssertionError):
    """A parameter was added without declaring how it enters the identity (a programming error)."""


def digest(obj: Any) -> str:
    """Stable sha256 of a JSON-able object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _pick(values: dict[str, Any], always: Sequence[str], neutral: dict[str, Any], skip: Iterable[str], what: str) -> dict[str, Any]:
    known = _known(tuple(always), tuple(neutral), frozenset(skip) if not isinstance(skip, frozenset) else skip)
    unknown = [k for k in values if k not in known]
    if unknown:
        raise IdentityError(
            f"{what} '{unknown[0]}' is not declared in fewshot_eval/plan/identity.py: add it to NEUTRAL_"
            f"{'PARAMS' if what == 'parameter' else 'MODEL'} with its neutral value (or to the non-identity keys)."
        )
    out = {k: values.get(k) for k in always}
    out.update({k: v for k, v in values.items() if k in neutral and v != neutral[k]})
    return dict(sorted(out.items()))


@lru_cache(maxsize=16)
def _known(always: tuple[str, ...], neutral: tuple[str, ...], skip: frozenset[str]) -> frozenset[str]:
    return frozenset(always) | frozenset(neutral) | skip


def job_identity(model: dict[str, Any], tasks: list[str], params: dict[str, Any], nshot: int,
                 catalog: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What makes two jobs' numbers comparable: model (minus resources etc.), tasks, eval params, nshot,
    and -- only for task settings naming lm-eval catalog tasks -- ``catalog`` (:func:`catalog_identity`).

    ``model['eval']`` is left out: its values are already in ``params`` (after layering)."""
    out = {
        "model": _pick(model, MODEL_0_1_0, NEUTRAL_MODEL, MODEL_NON_IDENTITY, "model field"),
        "tasks": list(tasks),
        "params": _pick(params, PARAMS_0_1_0, NEUTRAL_PARAMS, NON_NUMERIC_KEYS, "parameter"),
        "nshot": nshot,
    }
    if catalog:
        out["catalog"] = catalog
    return out


def catalog_identity(tasks: Sequence[str], search: Sequence[Path]) -> Optional[dict[str, Any]]:
    """For tasks ``lm_eval:<name>``: lm_eval's version and each name's config version and hash
    (:func:`fewshot_eval.evaluate.lm_eval_bridge.catalog_identity.identity`); None when the tasks name no catalog task, so the
    identities of all other results are what they always were."""
    if not any(is_catalog(t) for t in tasks):
        return None
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_identity import identity

    return identity(list(tasks), search)


def identity_digest(identity: dict[str, Any]) -> str:
    return digest(identity)


class IdentityTemplate:
    """:func:`job_identity` and :func:`identity_digest` of one model, tasks and params for any nshot: the
    parts that do not depend on nshot are picked and serialised once (a plan has thousands of jobs per
    setting). ``digest(n) == identity_digest(job_identity(model, tasks, params, n, catalog))``, byte for byte:
    the JSON of the identity, keys sorted, is the same text with nshot's number in its place."""

    def __init__(self, model: dict[str, Any], tasks: list[str], params: dict[str, Any], catalog: Optional[dict[str, Any]] = None,
                 memo: Optional[dict[Any, Any]] = None) -> None:
        """``memo``: a dict shared by the templates of one plan, where a model's and a params dict's parts are kept (for
        the other settings that share them)."""

        def dumps(obj: Any) -> str:
            return json.dumps(obj, sort_keys=True, default=str)

        hit = memo.get(("identity model", id(model))) if memo is not None else None
        if hit is None or hit[0] is not model:
            picked = _pick(model, MODEL_0_1_0, NEUTRAL_MODEL, MODEL_NON_IDENTITY, "model field")
            hit = (model, picked, dumps(picked))
            if memo is not None:
                memo[("identity model", id(model))] = hit  # the dict is kept there: its id is not reused
        self.model, model_json = hit[1], hit[2]
        hit = memo.get(("identity params", id(params))) if memo is not None else None
        if hit is None or hit[0] is not params:
            picked = _pick(params, PARAMS_0_1_0, NEUTRAL_PARAMS, NON_NUMERIC_KEYS, "parameter")
            hit = (params, picked, dumps(picked))
            if memo is not None:
                memo[("identity params", id(params))] = hit
        self.params, params_json = hit[1], hit[2]
        self.tasks = list(tasks)
        self.catalog = catalog or None
        head = f'{{"catalog": {dumps(self.catalog)}, ' if self.catalog else "{"  # keys sorted: catalog, model, nshot, params, tasks
        self._head = f'{head}"model": {model_json}, "nshot": '
        self._tail = f', "params": {params_json}, "tasks": {dumps(self.tasks)}}}'

    def identity(self, nshot: int) -> dict[str, Any]:
        """The identity dict (its model/params dicts shared by every nshot: read them, do not change them)."""
        out = {"model": self.model, "tasks": self.tasks, "params": self.params, "nshot": nshot}
        if self.catalog:
            out["catalog"] = self.catalog
        return out

    def digest(self, nshot: int) -> str:
        if type(nshot) is not int:  # noqa: E721 (bool, numpy ints ...: the general formula)
            return identity_digest(self.identity(nshot))
        return hashlib.sha256(f"{self._head}{nshot}{self._tail}".encode()).hexdigest()


def with_params(identity: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``identity`` with its params replaced by those of ``params`` (used by recalc)."""
    return {**identity, "params": _pick(params, PARAMS_0_1_0, NEUTRAL_PARAMS, NON_NUMERIC_KEYS, "parameter")}


# ---- fingerprints of task data ---------------------------------------------------------------

FINGERPRINT_FORMAT = 2


@lru_cache(maxsize=4096)
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a task data file; one this user cannot read is a ConfigError naming it (no traceback)."""
    try:
        st = path.stat()
        return _file_digest(path, st.st_mtime_ns, st.st_size)
    except OSError as e:
        raise ConfigError(f"cannot read task data file {path} ({e.strerror or type(e).__name__}): every job reads it and its "
                          f"content is part of the result's identity. Make it readable by you (chmod a+r), or point the task "
                          f"definition at a copy you can read.") from None


def _strings(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str) and 0 < len(node) < 512 and "\n" not in node:
        yield node


def _existing(candidates: Iterable[Path]) -> list[Path]:
    out = []
    for c in candidates:
        try:
            if c.is_file():
                out.append(c)
        except OSError:
            pass
    return out


def _referenced_files(node: Any, base: Path, expand_lang: bool) -> list[Path]:
    """Local files a task definition names (relative to it); with ``expand_lang``, ``{lang}`` paths
    for each of its ``languages``."""
    langs = [str(x) for x in node.get("languages") or []] if isinstance(node, dict) else []
    found: set[Path] = set()
    for s in _strings(node):
        if "{" not in s:
            found.update(_existing([base / s]))
        elif expand_lang and "{lang}" in s and s.replace("{lang}", "").count("{") == 0:
            found.update(_existing(base / s.replace("{lang}", lang) for lang in langs))
    return sorted(found)


def task_data_digest(task_def_file: Path, fmt: int = FINGERPRINT_FORMAT) -> str:
    """Digest of a task definition and every local data file it names (format 1: ``{lang}`` files left out)."""
    import yaml

    text = task_def_file.read_text(encoding="utf-8")
    parts = [digest(text)]
    try:
        node = yaml_safe_load(text)
    except yaml.YAMLError:
        node = None
    for f in _referenced_files(node, task_def_file.parent, expand_lang=fmt >= 2):
        parts.append(file_digest(f))
    return digest(parts)


@lru_cache(maxsize=1024)
def _data_digest(search: tuple[Path, ...], name: str, fmt: int) -> str:
    return task_data_digest(find_config_file("task_def", name, search), fmt)


def _catalog_data_digest(search: tuple[Path, ...], name: str) -> str:
    """An lm-eval catalog task: the local data files it reads (its config is in the identity). Not
    cached: the catalog notices edits itself."""
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_identity import local_files

    try:
        files = local_files(name, search)
    except ConfigError:  # an unknown name: the planning checks report it on the job's row
        return "unknown"
    return digest([file_digest(f) for f in files])


def fingerprints(id_digest: str, tasks: Sequence[str], search: Sequence[Path]) -> tuple[str, frozenset[str]]:
    """(the fingerprint a new result records, every fingerprint an existing result may carry)."""
    return TaskFingerprints(tasks, search)(id_digest)


class TaskFingerprints:
    """:func:`fingerprints` of one list of tasks for any identity digest: the task data is digested once."""

    def __init__(self, tasks: Sequence[str], search: Sequence[Path]) -> None:
        search_t = tuple(search)
        catalog = {t: _catalog_data_digest(search_t, t) for t in tasks if is_catalog(t)}  # the same in both formats

        def parts(fmt: int) -> list[str]:
            return [catalog[t] if t in catalog else _data_digest(search_t, t, fmt) for t in tasks]

        self._parts = {fmt: parts(fmt) for fmt in (FINGERPRINT_FORMAT, 1)}  # 1: release 0.1.0
        # digest([id, *parts]) is the sha256 of '["<id>", "<part>", ...]': the parts' JSON is written once
        plain = all(json.dumps(p) == f'"{p}"' for ps in self._parts.values() for p in ps)
        self._tails = {fmt: "".join(f', "{p}"' for p in ps) + "]" for fmt, ps in self._parts.items()} if plain else None

    def __call__(self, id_digest: str) -> tuple[str, frozenset[str]]:
        if self._tails is None or not _HEX.fullmatch(id_digest):
            current = f"{FINGERPRINT_FORMAT}:" + digest([id_digest, *self._parts[FINGERPRINT_FORMAT]])
            format1 = digest([id_digest, *self._parts[1]])
        else:
            current = f"{FINGERPRINT_FORMAT}:" + hashlib.sha256(f'["{id_digest}"{self._tails[FINGERPRINT_FORMAT]}'.encode()).hexdigest()
            format1 = hashlib.sha256(f'["{id_digest}"{self._tails[1]}'.encode()).hexdigest()
        return current, frozenset({current, format1})


_HEX = re.compile(r"[0-9a-f]+")




# ---- fingerprints of model weights ------------------------------------------------------------

_HEX40 = re.compile(r"[0-9a-f]{40}")


def _hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"


def weights_fingerprint(weights: Optional[str], revision: Optional[str]) -> Optional[str]:
    """What identifies the bytes behind ``weights`` without reading them; None when unknown."""
    if not weights:
        return None
    if weights == "tiny-gpt2":
        from fewshot_eval.evaluate.backends.tiny_model import VERSION

        return VERSION
    if is_local_weights(weights):
        root = Path(weights).expanduser()
        if not root.is_dir():
            return None
        entries = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if f.startswith("."):
                    continue
                st = os.stat(os.path.join(dirpath, f))
                entries.append([os.path.relpath(os.path.join(dirpath, f), root), st.st_size, st.st_mtime_ns])
        return "files:" + digest(entries)[:16]
    rev = revision or "main"
    if _HEX40.fullmatch(rev):
        return f"hub:{weights}@{rev}"
    ref = _hub_cache() / f"models--{weights.replace('/', '--')}" / "refs" / rev
    try:
        return f"hub:{weights}@{ref.read_text().strip()}"
    except OSError:
        return None

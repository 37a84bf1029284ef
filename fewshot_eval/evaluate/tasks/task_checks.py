"""Planning checks of a task setting: what would make a job die at its start, checked before launch.

The planner calls these once per distinct (task setting, params) -- not per job -- and marks
the affected rows ``error: <reason>``:

* task data: every split a job reads exists and parses (errors name file and line), gold labels
  are in the label set, the selected templates' fields are in the evaluated split and (nshot != 0)
  in the demonstration split; templates, languages, splits, scoring mode, calibrator, calibration
  options, ``demo_sampling`` and ``extra_metrics`` (registered, of the task's kind) are valid; ``seed`` is an int; ``balanced`` divides nshot and each
  class has enough rows;
* task shapes: a perplexity task's predictor supports ``loglikelihood_rolling``; no majority
  baseline or calibration on minimal pairs; no ``balanced`` without a fixed label set; a
  generation task's settings (``until``, ``max_new_tokens``, sampling) are valid and its
  predictor can generate (not a baseline).

Sources through HuggingFace ``datasets`` are not read at planning (that would download), except
from a local mirror (``$FEWSHOT_HF_MIRROR``, see ``evaluate/tasks/task_data.py``), which is checked like local
files. Offline (``HF_DATASETS_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``), a hub dataset that is neither
mirrored nor in the local cache is an error row (the job could not load it: ``fewshot-eval prefetch`` fetches it); a manual download
(``$VARS`` in ``data_dir``/``data_files``, storycloze) is read and checked at planning when it is
there, and is an error row saying what to set when it is not.

Model settings are checked by :mod:`fewshot_eval.evaluate.backends.model_checks`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from fewshot_eval.config import ConfigError, env_flag
from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import is_catalog

Warn = Callable[[str], None]


def _ignore(message: str) -> None:
    pass


def data_warnings(td: Any, split: str, docs: Sequence[Any], lang: Optional[str], warn: Warn) -> None:
    """The data rules of docs/parameters.md#data-rules: an empty evaluated split and repeated example ids are
    allowed (a sweep may hold a placeholder; ids are only labels), but said once at planning."""
    where = f"task '{td.name}'{f' ({lang})' if lang else ''} split '{split}'"
    if not docs:
        warn(f"{where} has no rows: its metrics will be over n=0 examples ({td.path}).")
        return
    seen: set[Any] = set()
    repeated = [i for i in (d.get("_id") for d in docs) if i in seen or seen.add(i)]
    if repeated:
        warn(f"{where}: {len(repeated)} example id{'s are' if len(repeated) > 1 else ' is'} repeated (e.g. {repeated[0]!r}): "
             f"predictions are matched by row, so all rows count, but ids no longer name one row ({td.path}).")


def check_tasks(task_names: Sequence[str], params: dict[str, Any], search: Sequence[Path], warn: Warn = _ignore) -> None:
    """Validate what the tasks of one task setting read under ``params``; raises ConfigError; ``warn`` gets
    what is allowed but worth a word (:func:`data_warnings`)."""
    from fewshot_eval.evaluate.calibration import check_calibrator, parse_option, task_options
    from fewshot_eval.evaluate.registry import predictor_capability
    from fewshot_eval.evaluate.scoring import check_mode
    from fewshot_eval.evaluate.tasks.definitions import LocalSource, load_task_def
    from fewshot_eval.evaluate.tasks.demonstrations import check_demo_sampling
    from fewshot_eval.evaluate.tasks.selection import select_languages, select_metrics, select_templates, split_data

    check_mode(params.get("scoring"))
    check_demo_sampling(params.get("demo_sampling"), balanced=bool(params.get("balanced")))
    calibrator = check_calibrator(params.get("calibrator"))
    seed = params.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"seed must be an integer, got {seed!r}.")
    for name in task_names:
        if is_catalog(name):
            extra = params.get("extra_metrics")
            if (extra.get(name) if isinstance(extra, dict) else extra) not in (None, [], ""):
                raise ConfigError(f"extra_metrics: task '{name}' is an lm-eval catalog task, whose metrics lm-eval computes; "
                                  "name only this project's task definitions ({<task>: [metrics]}).")
            check_catalog_task(name, params, search)
            continue
        td = load_task_def(name, search)
        select_metrics(td, params)
        if td.kind == "generate":
            _check_generation(td, params)
        select_templates(td, params)
        langs, train_lang = select_languages(td, params)
        if td.kind == "perplexity":
            check_operation(params.get("predictor"), "loglikelihood_rolling", f"task '{name}' is a perplexity task")
        if td.kind == "minimal_pairs" and calibrator:
            raise ConfigError(f"calibrator={calibrator}: task '{name}' is a minimal-pairs task (whole sentences, no shared prompt "
                              "to make content-free); use calibrator=null.")
        if td.kind == "minimal_pairs" and predictor_capability(params.get("predictor"), "needs_train_labels", search):
            raise ConfigError(f"predictor '{params['predictor']}': task '{name}' is a minimal-pairs task, whose gold is always the 'good' sentence, "
                              "so a majority class would score 100%. Use predictor 'random' as the chance baseline.")
        if calibrator and td.kind not in ("perplexity", "generate"):  # generation: the calibrator is ignored (a warning)
            for option in task_options(params, name):
                pairs = parse_option(option, name)
                if td.choices_field and any(k == td.choices_field for k, _ in pairs):
                    raise ConfigError(f"calibration_options.{name}: option '{option}' blanks '{td.choices_field}', the field holding "
                                      "the candidates; blank the context fields instead.")
        if isinstance(td.source, LocalSource) or hf_mirrored(td, params, langs, train_lang) or manual_present(td, langs):
            from fewshot_eval.evaluate.tasks.selection import split_names

            for lang in langs:
                eval_docs, _ = split_data(td, params, lang, train_lang, demonstrations=False)
                data_warnings(td, split_names(td, params)[1], eval_docs, lang, warn)
        else:
            from fewshot_eval.evaluate.tasks.hub_data import check_hub_id

            check_hub_id(td)  # the hub refuses bare ids: say where the dataset lives now
            check_hf_available(td, params, langs, train_lang)


def needed_splits(td: Any, params: dict[str, Any], langs: Sequence[Optional[str]], train_lang: Optional[str]) -> list[tuple[str, Optional[str]]]:
    """(split, language) pairs a job reads."""
    from fewshot_eval.evaluate.tasks.selection import split_names

    train, evals = split_names(td, params)
    out = [(evals, lang) for lang in langs]
    if train is None and "validation" in td.splits:
        train = "validation"
    if train is not None:
        out += [(train, train_lang or lang) for lang in langs]
    return list(dict.fromkeys(out))


def hf_mirrored(td: Any, params: dict[str, Any], langs: Sequence[Optional[str]], train_lang: Optional[str]) -> bool:
    """Every split a job reads of this hub task is in the local mirror (``$FEWSHOT_HF_MIRROR``)."""
    from fewshot_eval.evaluate.tasks.definitions import HFSource
    from fewshot_eval.evaluate.tasks.task_data import hf_mirror_file

    if not isinstance(td.source, HFSource):
        return False
    return all(hf_mirror_file(td.source, split, lang if td.languages else None) is not None for split, lang in needed_splits(td, params, langs, train_lang))


def manual_present(td: Any, langs: Sequence[Optional[str]]) -> bool:
    """A manual download (``$VARS`` in ``data_dir``/``data_files``) that is there: read and checked at
    planning like local files. One that is not there raises ConfigError saying what to set."""
    from fewshot_eval.evaluate.tasks.task_data import hf_manual_files, is_manual

    if not is_manual(td):
        return False
    for lang in langs:
        hf_manual_files(td, lang)
    return True


def hf_cached(path: str) -> bool:
    """A hub dataset has files in the local caches (``datasets``' or the hub's); nothing is downloaded."""
    home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets").expanduser()
    hub_cache = Path(os.environ.get("HF_HUB_CACHE") or home / "hub").expanduser()
    return (datasets_cache / path.replace("/", "___")).is_dir() or (hub_cache / f"datasets--{path.replace('/', '--')}").is_dir()


def _splits_cached(td: Any, params: dict[str, Any], langs: Sequence[Optional[str]], train_lang: Optional[str]) -> bool:
    """A hub repo: every split a job reads is in the hub cache (or datasets' cache holds an earlier load of the
    dataset); another source (a builder over files): its cache dirs exist."""
    from fewshot_eval.evaluate.tasks.hub_data import hub_split, local_files

    home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets").expanduser()
    if (datasets_cache / td.source.path.replace("/", "___")).is_dir():
        return True
    splits = [hub_split(td, split, lang if td.languages else None) for split, lang in needed_splits(td, params, langs, train_lang)]
    if any(hs is None for hs in splits):
        return hf_cached(td.source.path)
    return all(local_files(hs) is not None for hs in splits)


def check_hf_available(td: Any, params: dict[str, Any], langs: Sequence[Optional[str]], train_lang: Optional[str]) -> None:
    """A hub task a job could not load: a manual download that is missing, or offline without a local copy."""
    from fewshot_eval.evaluate.tasks.task_data import HF_MIRROR_ENV, hf_mirror_file

    offline = [v for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE") if env_flag(v)]
    if offline and not _splits_cached(td, params, langs, train_lang):
        src = td.source
        configs = sorted({(src.name or "").replace("{lang}", lang or "") for split, lang in needed_splits(td, params, langs, train_lang)
                          if hf_mirror_file(src, split, lang if td.languages else None) is None} - {""})
        name = f" (config{'s' if len(configs) > 1 else ''} {', '.join(configs)})" if configs else ""
        raise ConfigError(
            f"task '{td.name}': hub dataset {td.source.path}{name} is not in the local cache and {offline[0]}=1: its job "
            f"could not load it. Fetch it where there is network with `fewshot-eval prefetch -m <this sweep's overrides>`, "
            f"point {HF_MIRROR_ENV} at JSONL copies, or unset {offline[0]}."
        )


def check_operation(predictor: Optional[str], operation: str, why: str) -> None:
    """The predictor supports ``operation`` (a registry operation), else a ConfigError saying which do."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_class, predictor_names

    if not predictor:
        return
    cls = predictor_class(predictor, config_dirs())
    if operation not in cls.operations:
        able = [n for n in predictor_names() if operation in predictor_class(n).operations]
        raise ConfigError(f"predictor '{predictor}': {why} and needs '{operation}', which it does not support "
                          f"(it supports {', '.join(sorted(cls.operations))}). Predictors that do: {', '.join(able) or 'none'}.")


def _check_generation(td: Any, params: dict[str, Any]) -> None:
    """Generation settings are valid and the job's predictor implements ``generate_until``."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_class
    from fewshot_eval.evaluate.tasks.generation_task import check_predictor_generates, generation_settings

    generation_settings(td, params)
    predictor = params.get("predictor")
    if predictor:
        try:
            cls = predictor_class(predictor, config_dirs())
        except ConfigError:
            return  # an unknown predictor is the model check's error
        check_predictor_generates(td, predictor, cls)


def check_catalog_task(name: str, params: dict[str, Any], search: Sequence[Path]) -> None:
    """An lm-eval catalog task (``lm_eval:<name>``): it exists (else the close matches), the predictor can
    score its requests, its data can be read (offline: from the HuggingFace cache)."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_checks import check_task
    from fewshot_eval.evaluate.registry import predictor_class

    predictor = params["predictor"]
    cls = predictor_class(predictor, list(search) or config_dirs())
    if cls.needs_train_labels:
        raise ConfigError(f"task '{name}': predictor '{predictor}' needs a task's train labels, which lm-eval catalog tasks do not expose; "
                          f"use predictor 'random' as their baseline.")
    check_task(name, getattr(cls, "operations", ()) or ("loglikelihood",), predictor, search)


def demo_pool_size(task_names: Sequence[str], params: dict[str, Any], search: Sequence[Path]) -> Optional[int]:
    """The largest demonstration pool over the tasks and languages (None: a task reads ``datasets``)."""
    from fewshot_eval.evaluate.tasks.definitions import LocalSource, load_task_def
    from fewshot_eval.evaluate.tasks.selection import select_languages, split_data

    sizes = []
    for name in task_names:
        if is_catalog(name):
            return None
        td = load_task_def(name, search)
        if not isinstance(td.source, LocalSource):
            return None
        langs, train_lang = select_languages(td, params)
        sizes += [len(split_data(td, params, lang, train_lang, demonstrations=False)[1]) for lang in langs]
    return max(sizes) if sizes else None


def eval_size(task_names: Sequence[str], params: dict[str, Any], search: Sequence[Path]) -> Optional[int]:
    """Examples one trial scores: per task, its evaluated rows (``n_eval_samples`` applied) x languages x
    templates. None when a task's data is not on disk (a hub dataset neither mirrored nor a manual
    download, an lm-eval catalog task) or cannot be read (the planning checks report that)."""
    from fewshot_eval.evaluate.tasks.definitions import LocalSource, load_task_def
    from fewshot_eval.evaluate.tasks.selection import select_languages, select_templates, split_names
    from fewshot_eval.evaluate.tasks.task_data import load_split

    total = 0
    try:
        for name in task_names:
            if is_catalog(name):
                return None
            td = load_task_def(name, search)
            langs, train_lang = select_languages(td, params)
            if not (isinstance(td.source, LocalSource) or hf_mirrored(td, params, langs, train_lang) or manual_present(td, langs)):
                return None
            evals = split_names(td, params)[1]
            n = int(params.get("n_eval_samples") or 0)
            templates = len(select_templates(td, params))
            for lang in langs:
                rows = len(load_split(td, evals, lang))
                total += (min(rows, n) if n > 0 else rows) * templates
    except (ConfigError, OSError, ValueError):
        return None
    return total


def check_nshot(task_names: Sequence[str], params: dict[str, Any], nshot: int, search: Sequence[Path], warn: Warn = _ignore) -> None:
    """What depends on nshot: with demonstrations, the templates' fields are in the demonstration
    split (an empty one is a warning: the prompts get none); ``balanced`` (see :func:`check_balanced`)."""
    from fewshot_eval.evaluate.tasks.definitions import LocalSource, load_task_def
    from fewshot_eval.evaluate.tasks.selection import select_languages, split_data

    if nshot != 0:
        for name in task_names:
            if is_catalog(name):  # lm-eval samples its own demonstrations
                continue
            td = load_task_def(name, search)
            if isinstance(td.source, LocalSource):
                langs, train_lang = select_languages(td, params)
                for lang in langs:
                    _, pool = split_data(td, params, lang, train_lang, demonstrations=True)
                    if not pool:
                        warn(f"task '{td.name}'{f' ({lang})' if lang else ''}: nshot={nshot} but its demonstration split has no rows "
                             f"(besides the evaluated ones): its prompts get no demonstrations, as nshot=0 ({td.path}).")
    check_balanced(task_names, params, nshot, search)


def check_balanced(task_names: Sequence[str], params: dict[str, Any], nshot: int, search: Sequence[Path]) -> None:
    """``balanced=true``: nshot divides by the classes and every class has enough demonstration rows.
    lm-eval catalog tasks take neither ``balanced`` nor ``nshot=-1`` (the whole train set)."""
    for name in task_names:
        if is_catalog(name) and (nshot < 0 or params.get("balanced")):
            what = "nshot=-1 (the whole train set)" if nshot < 0 else "balanced=true"
            raise ConfigError(f"task '{name}': {what} is not supported for lm-eval catalog tasks (lm-eval samples num_fewshot demonstrations itself). "
                              f"Use nshot >= 0 and balanced=false.")
    if not params.get("balanced") or nshot <= 0:
        return
    from fewshot_eval.evaluate.tasks.definitions import LocalSource, load_task_def
    from fewshot_eval.evaluate.tasks.selection import select_languages, split_data

    for name in task_names:
        td = load_task_def(name, search)
        n = len(td.labels)
        if not n:
            raise ConfigError(f"balanced=true for task '{name}': it has no fixed label set ({td.kind} task"
                              f"{', candidates per example' if td.choices_field else ''}); use balanced=false.")
        if nshot % n:
            raise ConfigError(
                f"balanced=true for task '{name}': nshot={nshot} is not divisible by its {n} classes {td.labels}. "
                f"Use a multiple of {n} or balanced=false."
            )
        if isinstance(td.source, LocalSource):
            langs, train_lang = select_languages(td, params)
            for lang in langs:
                pool = split_data(td, params, lang, train_lang, demonstrations=False)[1]
                for label in td.labels:
                    have = sum(1 for d in pool if d["_label"] == label)
                    if have < nshot // n:
                        raise ConfigError(
                            f"balanced=true for task '{name}': class '{label}' has {have} demonstration rows, "
                            f"{nshot // n} needed for nshot={nshot}."
                        )

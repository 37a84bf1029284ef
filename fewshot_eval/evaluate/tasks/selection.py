"""What a job evaluates of a task under its params: templates, metrics, languages and splits.

Each function reads the params that pick among what a task definition offers (``templates``,
``extra_metrics``, ``languages``/``train_languages``, ``train_set``/``eval_set``,
``n_eval_samples``; a dict value is per task: ``{<task>: value}``) and rejects a choice the task
does not have with a :class:`~fewshot_eval.config.ConfigError` listing the valid ones.
"""

from __future__ import annotations

from typing import Any, Optional

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.tasks.definitions import TaskDef
from fewshot_eval.evaluate.tasks.task_data import Doc, check_split_fields, load_split


def _per_task(params: dict[str, Any], key: str, task: str) -> Any:
    value = params.get(key)
    if isinstance(value, dict):
        return value.get(task)
    return value


def select_templates(task: TaskDef, params: dict[str, Any]) -> list[str]:
    """``params['templates'][task]`` (a name or a list) or the task's default template."""
    chosen = _per_task(params, "templates", task.name)
    names = [task.default_template] if chosen in (None, [], "") else ([chosen] if isinstance(chosen, str) else [str(c) for c in chosen])
    for n in names:
        if n not in task.templates:
            raise ConfigError(f"templates.{task.name}: unknown template '{n}' for task '{task.name}'. Valid: {', '.join(task.templates)}.")
    return names


def select_metrics(task: TaskDef, params: dict[str, Any]) -> tuple[str, ...]:
    """The task's own metrics plus ``params['extra_metrics']`` (``{task: [names]}`` or one list for
    every task), in that order without repeats; an unknown metric, or one of another kind than the
    task (a generation metric on a ranking task), is a ConfigError listing what is valid."""
    from fewshot_eval.evaluate.registry import metric, metric_kind, metric_names

    extra = _per_task(params, "extra_metrics", task.name)
    if extra in (None, [], ""):
        return task.metrics
    names = [extra] if isinstance(extra, str) else extra
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"extra_metrics.{task.name}: expected a metric name or a list of them, got {extra!r}.")
    kind = metric_kind(task.kind)
    for n in names:
        if n not in metric_names():
            raise ConfigError(f"extra_metrics.{task.name}: unknown metric '{n}'. Valid: {', '.join(metric_names())} "
                              "(register your own: fewshot_eval.evaluate.registry.register_metric).")
        if metric(n).kind != kind:
            valid = [m for m in metric_names() if metric(m).kind == kind]
            raise ConfigError(f"extra_metrics.{task.name}: metric '{n}' scores {'generated text' if kind == 'choice' else 'chosen labels'}, "
                              f"but task '{task.name}' is kind: {task.kind}. Metrics of its kind: {', '.join(valid)}.")
    return tuple(dict.fromkeys([*task.metrics, *names]))


def select_languages(task: TaskDef, params: dict[str, Any]) -> tuple[list[Optional[str]], Optional[str]]:
    """(evaluated languages, demonstration language or None = same as evaluated)."""
    langs = _per_task(params, "languages", task.name)
    train_lang = _per_task(params, "train_languages", task.name)
    if not task.languages:
        if langs or train_lang:
            raise ConfigError(f"languages/train_languages.{task.name}: task '{task.name}' is not multilingual (no 'languages' in {task.path}).")
        return [None], None
    if langs in (None, [], ""):
        langs = task.default_languages or task.languages
    langs = [langs] if isinstance(langs, str) else [str(x) for x in langs]
    for lang in [*langs, *([train_lang] if train_lang else [])]:
        if lang not in task.languages:
            raise ConfigError(f"languages.{task.name}: unknown language '{lang}' for task '{task.name}'. Valid: {', '.join(task.languages)}.")
    return langs, (str(train_lang) if train_lang else None)


def split_names(task: TaskDef, params: dict[str, Any]) -> tuple[Optional[str], str]:
    """(train split or None, eval split) after the ``train_set``/``eval_set`` overrides.

    None: the task has no train split; demonstrations then come from the validation split
    minus the evaluated rows (see :func:`fewshot_eval.evaluate.tasks.demonstrations.demo_pool`).
    """
    train = _per_task(params, "train_set", task.name) or task.train_split
    evals = _per_task(params, "eval_set", task.name) or task.eval_split
    for key, split in (("train_set", train), ("eval_set", evals)):
        if split is not None and split not in task.source.splits:
            raise ConfigError(f"{key}: unknown split '{split}' for task '{task.name}'. Valid: {', '.join(task.splits)}.")
    return (str(train) if train else None), str(evals)


def lm_eval_drops_evaluated(task: TaskDef, params: dict[str, Any]) -> bool:
    """lm-evaluation-harness's k / k+1 rule (``ConfigurableTask.fewshot_context``): its sampler draws k+1
    demonstrations and drops the evaluated example when the task's fewshot split equals its test split
    *as configured* -- both unset counts as equal. Here: ``train_set`` (else the task's ``train_split``
    as written) against ``eval_set`` (else its ``eval_split`` as written)."""
    written_train, written_eval = task.written_splits
    fewshot = _per_task(params, "train_set", task.name) or written_train
    test = _per_task(params, "eval_set", task.name) or written_eval
    return fewshot == test


def split_data(task: TaskDef, params: dict[str, Any], lang: Optional[str], train_lang: Optional[str],
               *, demonstrations: bool = True, keep_evaluated: bool = False) -> tuple[list[Doc], list[Doc]]:
    """(evaluated rows, demonstration pool) of one language: ``n_eval_samples`` applied; the pool is
    the train split in the demonstration language, never containing an evaluated row -- unless
    ``keep_evaluated`` (lm-eval's sampler: the whole split, each example drops itself).

    The selected templates' fields must exist in the evaluated rows, and in the pool only when
    ``demonstrations`` are drawn from it (a field missing from a split that is not read is fine)."""
    from fewshot_eval.evaluate.tasks.demonstrations import demo_pool

    train_split, eval_split = split_names(task, params)
    eval_docs = load_split(task, eval_split, lang)
    n = int(params.get("n_eval_samples") or 0)
    if n > 0:
        eval_docs = eval_docs[:n]
    demo_lang = train_lang or lang
    if train_split is not None:
        pool = load_split(task, train_split, demo_lang)
        if train_split == eval_split and demo_lang == lang and not keep_evaluated:  # never demonstrate an evaluated row
            pool = demo_pool(None, pool, eval_docs)
    else:
        val = load_split(task, "validation", demo_lang) if "validation" in task.splits else None
        pool = demo_pool(None, val, [] if keep_evaluated else eval_docs)
    templates = select_templates(task, params)
    check_split_fields(task, eval_docs, eval_split, templates)
    if demonstrations:
        check_split_fields(task, pool, train_split or "validation", templates)
    return eval_docs, pool

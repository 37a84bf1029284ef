"""Task definitions: ``conf/task_def/<name>.yaml``, validated on load into a :class:`TaskDef`.

A task definition (see ``conf/task_def/copa_demo.yaml`` for a commented one)::

    description: COPA-like cause/effect choice.
    data:
      local:                         # JSON (list) or JSONL files, relative to this YAML; {lang} = language
        train: data/copa_demo/train.jsonl
        validation: data/copa_demo/validation.jsonl
      # or, for real use, a HuggingFace ``datasets`` source ({lang} allowed in name/data_files):
      # hf: {path: aps/super_glue, name: copa, splits: {train: train, validation: validation}}
    train_split: train               # demonstrations (params train_set overrides)
    eval_split: validation           # evaluated (params eval_set overrides)
    id_field: idx                    # null: "<split>-<row number>"
    fields: {}                       # template variable -> data column, when they differ
    label_field: label
    labels: [0, 1]                   # the candidate set (gold values); compared as strings
    metrics: [accuracy, macro_f1]    # registered metrics it reports (default: these two)
    preferred_metric: accuracy       # the one tables show; one of metrics
    default_template: default
    templates:
      default:
        prompt: "{{ premise }} {{ candidate }}"     # Jinja2; {{ candidate }} exactly once
        candidates: {0: "{{ choice1 }}", 1: "{{ choice2 }}"}   # label -> verbalisation (Jinja2)
        vars: {}                     # {lang: {name: text}} extra template variables per language
    languages: null                  # [en, de, ...] for multilingual tasks
    default_languages: null          # evaluated when params languages names none (null: all)
    record_fields: []                # data fields every prediction row records under 'fields'
                                     # (metrics over rows read them: StereoSet's target term)

A generation task (``kind: generate``, see ``conf/task_def/qa_demo.yaml``) has references
instead of labels: no ``label_field``/``labels``, and its templates a ``{{ target }}`` slot::

    kind: generate                   # default: choice (rank the candidates)
    references_field: answers        # the reference text, or a list of references (several allowed);
                                     # "answers.text": a key of a nested record (SQuAD, WMT's translation.de)
    until: ["\n"]                    # stop strings (params until overrides; default: params train_sep)
    max_new_tokens: 16               # params max_new_tokens overrides; default 32
    metrics: [exact_match, f1]       # default: these two; bleu, chrf for translation
    templates:
      default:
        prompt: "Q: {{ question }}\nA: {{ target }}"   # the model continues "Q: ...\nA:"
        target: "{{ answers[0] }}"  # what a demonstration shows (default: the first reference)

Other task shapes (see :mod:`fewshot_eval.evaluate.tasks.shapes` and :mod:`~fewshot_eval.evaluate.tasks.perplexity_task`)::

    kind: choice                     # default: rank candidates; or generate / perplexity / minimal_pairs
    choices_field: endings           # per-example candidates (a list field); gold = an index; no 'labels'
    choice_labels_field: choices.label   # with choices_field "choices.text": gold = the position of its label here (ARC)
    multiple_answers: true           # the gold field holds a list: several correct answers
    group_field: question_id         # rows with one value form a group (MultiRC); with positive_label;
                                     # or a list of (nested) fields: [idx.paragraph, idx.question]
    positive_label: 1                # the "true" label, for f1a
    pair_fields: {good: sentence_good, bad: sentence_bad}   # kind minimal_pairs (BLiMP)
    # kind perplexity: templates hold a 'document' (Jinja2), no labels/candidates

Unknown or missing keys, a template naming a field the data lacks, or an unknown
template/language/split are :class:`~fewshot_eval.config.ConfigError` naming the file and key.

Reading a task's data (local files, HuggingFace ``datasets``, the local mirror, manual
downloads) is :mod:`~fewshot_eval.evaluate.tasks.task_data`; what a job evaluates under its
params (templates, metrics, languages, splits) is :mod:`~fewshot_eval.evaluate.tasks.selection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import fields as dc_fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from fewshot_eval.config import ConfigError, check_keys, find_config_file, yaml_safe_load
from fewshot_eval.evaluate.tasks.templates import GenerationTemplate, Template


@dataclass
class LocalSource:
    splits: dict[str, str]  # split name -> path (relative to the YAML file), may contain {lang}


@dataclass
class HFSource:
    path: str  # hub dataset id ("aps/super_glue") or builder ("json")
    splits: dict[str, str]  # our split name -> the dataset's split name
    name: Optional[str] = None  # dataset config, may contain {lang}
    # hub split -> file or glob, may contain {lang}: of the hub repo at `revision` for a hub id
    # ("{lang}/test/*.parquet" on refs/convert/parquet); relative to the YAML for a builder like "json"
    data_files: Optional[dict[str, str]] = None
    revision: Optional[str] = None  # hub branch, tag, refs/convert/parquet or commit
    data_dir: Optional[str] = None  # $VARS and ~ expanded here and in data_files (manual downloads); unset/missing: a planning error


@dataclass(eq=False)  # hashable by identity: definitions are cached per file
class TaskDef:
    name: str
    path: Path  # the YAML file it came from
    source: LocalSource | HFSource
    label_field: Optional[str]  # None: every row's gold is ``gold_label`` (or a task without labels: generate, perplexity)
    labels: list[str]  # [] for generation tasks
    templates: dict[str, Template | GenerationTemplate]
    default_template: str
    train_split: Optional[str] = "train"  # None: demonstrations from the validation split minus evaluated rows
    eval_split: str = "validation"
    id_field: Optional[str] = None
    fields: dict[str, str] = field(default_factory=dict)
    preferred_metric: str = "accuracy"
    metrics: tuple[str, ...] = ("accuracy", "macro_f1")
    languages: Optional[list[str]] = None
    default_languages: Optional[list[str]] = None
    description: str = ""
    kind: str = "choice"  # choice: rank candidates | generate: generate text | perplexity | minimal_pairs
    references_field: Optional[str] = None  # generate: data field with the reference(s)
    until: Optional[list[str]] = None  # generate: stop strings (None: params train_sep)
    max_new_tokens: Optional[int] = None  # generate: new tokens at most (None: 32)
    choices_field: Optional[str] = None  # per-example candidates: this list field; labels are indices
    choice_labels_field: Optional[str] = None  # with choices_field: the gold is the position of its value in this list
    multiple_answers: bool = False  # the gold field holds a list of correct labels
    group_field: Optional[tuple[str, ...]] = None  # rows sharing these fields' values form one group (MultiRC)
    positive_label: Optional[str] = None  # the "true" label of grouped binary sub-problems (f1a)
    pair_fields: Optional[dict[str, str]] = None  # minimal_pairs: {good: field, bad: field}
    record_fields: tuple[str, ...] = ()  # data fields each prediction row records under ``fields`` (row metrics read them)
    written_splits: tuple[Optional[str], Optional[str]] = (None, None)  # (train_split, eval_split) as written (None: not or null)

    def labels_of(self, doc: dict[str, Any]) -> list[str]:
        """The candidate labels of one example: the task's labels, or the indices of its choices."""
        if self.choices_field:
            return [str(i) for i in range(len(doc[self.choices_field]))]
        return self.labels
    gold_label: Optional[str] = None  # one gold for every row (bias probes: crows_pairs, stereoset)

    @property
    def splits(self) -> list[str]:
        return list(self.source.splits)

    def where(self, key: str = "") -> str:
        return f"task_def '{self.name}' ({self.path})" + (f" key '{key}'" if key else "")


# ---------------------------------------------------------------- loading the YAML

_TOP_KEYS = {
    "description": False,
    "data": True,
    "train_split": False,
    "eval_split": False,
    "id_field": False,
    "fields": False,
    "label_field": False,  # choice tasks: one of label_field / gold_label
    "gold_label": False,
    "labels": False,
    "preferred_metric": False,
    "metrics": False,
    "default_template": False,
    "templates": False,
    "languages": False,
    "default_languages": False,
    "kind": False,
    "choices_field": False,
    "choice_labels_field": False,
    "multiple_answers": False,
    "group_field": False,
    "positive_label": False,
    "pair_fields": False,
    "references_field": False,
    "until": False,
    "max_new_tokens": False,
    "record_fields": False,
}  # key -> required (label_field, labels, references_field and templates: as the task's kind needs, see shapes.check_shape_keys)


def _str_list(value: Any, where: str) -> list[str]:
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list, got {value!r}.")
    return [str(v) for v in value]


def parse_task_def(name: str, path: Path, node: Any) -> TaskDef:
    """Validate one loaded task-definition YAML into a :class:`TaskDef`."""
    from fewshot_eval.evaluate.tasks.shapes import check_shape_keys, compile_shape_templates

    where = f"task_def/{name}.yaml ({path})"
    check_keys(node, _TOP_KEYS, where)
    shape = check_shape_keys(node, where)
    data = check_keys(node["data"], {"local": False, "hf": False}, f"{where} key 'data'")
    if len(data) != 1:
        raise ConfigError(f"{where} key 'data': give exactly one of 'local' or 'hf', got {sorted(data) or 'none'}.")
    source: LocalSource | HFSource
    if "local" in data:
        splits = check_keys(data["local"], [str(k) for k in data["local"] or {}], f"{where} key 'data.local'")
        if not splits:
            raise ConfigError(f"{where} key 'data.local': map split names to files, e.g. {{train: data/x/train.jsonl}}.")
        source = LocalSource({str(k): str(v) for k, v in splits.items()})
    else:
        hf = check_keys(data["hf"], {f.name: f.name in ("path", "splits") for f in dc_fields(HFSource)}, f"{where} key 'data.hf'")
        source = HFSource(**hf)
        source.splits = {str(k): str(v) for k, v in (source.splits or {}).items()}

    labels = _str_list(node["labels"], f"{where} key 'labels'") if "labels" in node else list(shape.get("labels", []))
    if "label_field" in node and "gold_label" in node:
        raise ConfigError(f"{where}: give only one of 'label_field' (the data's gold column) and 'gold_label' (one gold for every row).")
    if "gold_label" in node and str(node["gold_label"]) not in labels:
        raise ConfigError(f"{where} key 'gold_label': '{node['gold_label']}' is not one of labels {labels}.")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{where} key 'labels': duplicate labels in {labels}.")
    until = None
    if node.get("until") is not None:
        until = _stop_strings(node["until"], f"{where} key 'until'")
    max_new = node.get("max_new_tokens")
    if max_new is not None and (not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1):
        raise ConfigError(f"{where} key 'max_new_tokens': expected a positive integer, got {max_new!r}.")
    languages = _str_list(node["languages"], f"{where} key 'languages'") if node.get("languages") is not None else None
    default_languages = None
    if node.get("default_languages") is not None:
        default_languages = _str_list(node["default_languages"], f"{where} key 'default_languages'")
        bad = [lang for lang in default_languages if lang not in (languages or [])]
        if bad:
            raise ConfigError(f"{where} key 'default_languages': {bad} not in languages {languages}.")
    if languages is None and any("{lang}" in str(v) for v in _source_strings(source)):
        raise ConfigError(f"{where} key 'data': paths use {{lang}} but the task has no 'languages'.")

    templates = compile_shape_templates(node, shape, labels, languages, where)
    default_template = str(node.get("default_template") or next(iter(templates)))
    if default_template not in templates:
        raise ConfigError(f"{where} key 'default_template': '{default_template}' is not a template. Valid: {', '.join(templates)}.")
    from fewshot_eval.evaluate.metrics.label_metrics import DEFAULT_METRICS
    from fewshot_eval.evaluate.registry import metric, metric_kind

    kind = shape["kind"]
    default_metrics = shape.get("metrics", DEFAULT_METRICS)
    metrics = tuple(_str_list(node["metrics"], f"{where} key 'metrics'")) if node.get("metrics") is not None else default_metrics
    for m in metrics:
        try:
            found = metric(m)
        except ConfigError as e:
            raise ConfigError(f"{where} key 'metrics': {e}") from None
        if found.kind != metric_kind(kind):
            raise ConfigError(f"{where} key 'metrics': metric '{m}' scores {'generated text' if found.kind == 'generate' else 'chosen labels'}, "
                              f"this task is kind: {kind}. Use metrics of its kind, e.g. {', '.join(default_metrics)}.")
    preferred = str(node.get("preferred_metric") or metrics[0])
    if preferred not in metrics:
        raise ConfigError(f"{where} key 'preferred_metric': '{preferred}' is not one of its metrics {list(metrics)}.")
    fields_map = node.get("fields") or {}
    if not isinstance(fields_map, dict):
        raise ConfigError(f"{where} key 'fields': expected {{template variable: data column}}, got {fields_map!r}.")
    record = node.get("record_fields") or []
    if not isinstance(record, list) or not all(isinstance(f, str) and f and all(p.isidentifier() for p in f.split(".")) for f in record):
        raise ConfigError(f"{where} key 'record_fields': expected a list of data field names such as [target, bias_type], got {record!r}.")
    task = TaskDef(
        name=name,
        path=path,
        source=source,
        label_field=str(node["label_field"]) if "label_field" in node else None,
        gold_label=str(node["gold_label"]) if "gold_label" in node else None,
        labels=labels,
        templates=templates,
        default_template=default_template,
        train_split=_train_split(node, source),
        eval_split=str(node.get("eval_split") or "validation"),
        id_field=node.get("id_field"),
        fields={str(k): str(v) for k, v in fields_map.items()},
        preferred_metric=preferred,
        metrics=metrics,
        languages=languages,
        default_languages=default_languages,
        description=str(node.get("description") or ""),
        kind=shape["kind"],
        references_field=shape.get("references_field"),
        until=until,
        max_new_tokens=max_new,
        choices_field=shape.get("choices_field"),
        choice_labels_field=shape.get("choice_labels_field"),
        multiple_answers=bool(shape.get("multiple_answers")),
        group_field=shape.get("group_field"),
        positive_label=shape.get("positive_label"),
        pair_fields=shape.get("pair_fields"),
        record_fields=tuple(record),
        written_splits=(_written(node, "train_split"), _written(node, "eval_split")),
    )
    for key in ("train_split", "eval_split"):
        if getattr(task, key) is not None and getattr(task, key) not in source.splits:
            raise ConfigError(f"{where} key '{key}': split '{getattr(task, key)}' not in data splits {task.splits}.")
    return task


def _stop_strings(value: Any, where: str) -> list[str]:
    """A stop string or a list of them (non-empty strings)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"{where}: expected a non-empty string or a list of them, got {value!r}.")
    return list(items)


def _written(node: dict, key: str) -> Optional[str]:
    return None if node.get(key) is None else str(node[key])


def _train_split(node: dict, source: LocalSource | HFSource) -> Optional[str]:
    if "train_split" in node:
        return None if node["train_split"] is None else str(node["train_split"])
    return "train" if "train" in source.splits else None


def _source_strings(source: LocalSource | HFSource) -> list[str]:
    if isinstance(source, LocalSource):
        return list(source.splits.values())
    return [source.name or "", *((source.data_files or {}).values())]


@lru_cache(maxsize=1024)  # a plan goes round every task definition of its sweep once per setting: all of them kept
def _load_task_def_cached(name: str, path: str, mtime: float) -> TaskDef:
    try:
        node = yaml_safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"task_def/{name}.yaml ({path}): not valid YAML: {e}") from None
    return parse_task_def(name, Path(path), node)


def load_task_def(name: str, search: Iterable[Path] | None = None) -> TaskDef:
    """Find ``task_def/<name>.yaml`` in the config search path and validate it (user plugins loaded first)."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import load_plugins

    dirs = list(search) if search is not None else config_dirs()
    load_plugins(dirs)
    path = find_config_file("task_def", name, dirs)
    return _load_task_def_cached(name, str(path), path.stat().st_mtime)

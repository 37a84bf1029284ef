"""Task definitions: ``conf/task_def/<name>.yaml``, validated on load, plus their data.

A task definition (see ``conf/task_def/copa_demo.yaml`` for a commented one)::

    description: COPA-like cause/effect choice.
    data:
      local:                         # JSON (list) or JSONL files, relative to this YAML; {lang} = language
        train: data/copa_demo/train.jsonl
        validation: data/copa_demo/validation.jsonl
      # or, for real use, a HuggingFace ``datasets`` source ({lang} allowed in name/data_files):
      # hf: {path: super_glue, name: copa, splits: {train: train, validation: validation}}
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

Other task shapes (see :mod:`fewshot_eval.evaluate.tasks.shapes` and :mod:`~fewshot_eval.evaluate.metrics.perplexity`)::

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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields as dc_fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import yaml

from fewshot_eval.config import ConfigError, check_keys, find_config_file
from fewshot_eval.evaluate.tasks.templates import GenerationTemplate, Template


@dataclass
class LocalSource:
    splits: dict[str, str]  # split name -> path (relative to the YAML file), may contain {lang}


@dataclass
class HFSource:
    path: str  # datasets id ("super_glue") or builder ("json")
    splits: dict[str, str]  # our split name -> the dataset's split name
    name: Optional[str] = None  # dataset config, may contain {lang}
    data_files: Optional[dict[str, str]] = None  # for builders like "json"; relative to the YAML
    revision: Optional[str] = None
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


def _train_split(node: dict, source: LocalSource | HFSource) -> Optional[str]:
    if "train_split" in node:
        return None if node["train_split"] is None else str(node["train_split"])
    return "train" if "train" in source.splits else None


def _source_strings(source: LocalSource | HFSource) -> list[str]:
    if isinstance(source, LocalSource):
        return list(source.splits.values())
    return [source.name or "", *((source.data_files or {}).values())]


@lru_cache(maxsize=64)
def _load_task_def_cached(name: str, path: str, mtime: float) -> TaskDef:
    try:
        node = yaml.safe_load(Path(path).read_text())
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


# ---------------------------------------------------------------- data

Doc = dict[str, Any]


def _fmt(text: str, lang: Optional[str]) -> str:
    return text.replace("{lang}", lang or "")


def _read_local(path: Path, where: str) -> tuple[list[Doc], list[int]]:
    """Rows of a JSON list or JSONL file and the line each starts on; bad JSON names file and line."""
    if not path.is_file():
        raise ConfigError(f"{where}: data file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read data file ({e}).") from None
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg}). ({where})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ConfigError(f"{path}: must hold a JSON list of objects. ({where})")
        return rows, [0] * len(rows)
    rows, lines = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{n}: not valid JSON ({e.msg}). ({where})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{n}: expected a JSON object per line, got {type(row).__name__}. ({where})")
        rows.append(row)
        lines.append(n)
    return rows, lines


HF_MIRROR_ENV = "FEWSHOT_HF_MIRROR"


def hf_mirror_file(src: HFSource, split: str, lang: Optional[str]) -> Optional[Path]:
    """The local copy of one hub split under ``$FEWSHOT_HF_MIRROR`` (``<dir>/<hub id>/<config or
    'default'>/<hub split>.jsonl``, one row per line in the hub's own schema), or None.

    A mirror replaces the download for every task whose files it holds (an air-gapped cluster, the
    tests' fixtures); it is read with ``datasets``' json builder, the same path as a hub dataset."""
    import os

    root = os.environ.get(HF_MIRROR_ENV)
    if not root:
        return None
    path = Path(root).expanduser() / src.path / (_fmt(src.name, lang) if src.name else "default") / f"{src.splits[split]}.jsonl"
    return path if path.is_file() else None


def _manual(task: TaskDef, key: str, value: str) -> str:
    """A path with environment variables and ``~`` expanded; a ConfigError when it names an unset
    variable or nothing exists there (a manual download the user has not made)."""
    import os

    out = os.path.expanduser(os.path.expandvars(value))
    if "$" in out or not Path(out).exists():
        raise ConfigError(
            f"{task.where(key)}: '{value}' is {'not set' if '$' in out else f'{out}, which does not exist'}. "
            f"This dataset is a manual download: fetch it (see the task definition's comment), then export the variable it names "
            f"(or point {key} at it in your own copy of the task definition)."
        )
    return out


def hf_manual_files(task: TaskDef, lang: Optional[str] = None) -> tuple[Optional[str], Optional[dict[str, str]]]:
    """(``data_dir``, ``data_files``) of a hub source with ``$VARS``/``~`` expanded and relative files
    taken from the YAML's dir; raises ConfigError for a manual download that is not there."""
    src = task.source
    assert isinstance(src, HFSource)
    data_dir = _manual(task, "data.hf.data_dir", src.data_dir) if src.data_dir else None
    files = None
    if src.data_files:
        files = {}
        for k, v in src.data_files.items():
            v = _fmt(v, lang)
            if "://" in v:
                files[k] = v
            elif "$" in v or v.startswith("~"):
                files[k] = _manual(task, f"data.hf.data_files.{k}", v)
            else:
                files[k] = str((task.path.parent / v).resolve())
    return data_dir, files


def is_manual(task: TaskDef) -> bool:
    """A hub source whose files the user downloads by hand (``$VARS`` in data_dir/data_files)."""
    src = task.source
    return isinstance(src, HFSource) and any("$" in v for v in [src.data_dir or "", *(src.data_files or {}).values()])


def _read_hf(task: TaskDef, split: str, lang: Optional[str]) -> list[Doc]:
    import datasets  # lazy: heavy

    src = task.source
    assert isinstance(src, HFSource)
    mirrored = hf_mirror_file(src, split, lang)
    if mirrored is not None:
        ds = datasets.load_dataset("json", data_files={"rows": str(mirrored)}, split="rows")
        return [dict(row) for row in ds]
    kwargs: dict[str, Any] = {}
    if src.name:
        kwargs["name"] = _fmt(src.name, lang)
    if src.revision:
        kwargs["revision"] = src.revision
    data_dir, data_files = hf_manual_files(task, lang)
    if data_dir:
        kwargs["data_dir"] = data_dir
    if data_files:
        kwargs["data_files"] = data_files
    ds = datasets.load_dataset(src.path, split=src.splits[split], **kwargs)
    return [dict(row) for row in ds]


def _normalise(task: TaskDef, rows: list[Doc], split: str, where: str, origin: Optional[Path] = None, lines: Optional[list[int]] = None) -> list[Doc]:
    def at(i: int) -> str:  # "file:line: " for local files
        if origin is None:
            return f"split '{split}' row {i}: "
        return f"{origin}:{lines[i]}: " if lines and lines[i] else f"{origin} row {i}: "

    docs = []
    for i, row in enumerate(rows):
        doc = dict(row)
        for var, column in task.fields.items():
            if column not in row:
                raise ConfigError(f"{at(i)}{where}: key 'fields' maps '{var}' to column '{column}', missing in the data. Columns: {', '.join(row)}.")
            doc[var] = row[column]
        if task.label_field and task.label_field not in doc:
            raise ConfigError(f"{at(i)}{task.where('label_field')}: field '{task.label_field}' missing in split '{split}'. Fields: {', '.join(doc)}.")
        if task.kind == "generate":
            doc["_references"] = _references(task, doc, split, at(i))
            doc["_label"] = None
        elif task.kind != "choice" or task.choices_field or task.multiple_answers or task.group_field:
            from fewshot_eval.evaluate.tasks.shapes import normalise_shape_row

            normalise_shape_row(task, doc, split, at(i))
        else:
            label = str(doc[task.label_field]) if task.label_field is not None else str(task.gold_label)
            if label not in task.labels:
                raise ConfigError(f"{at(i)}{task.where('labels')}: split '{split}' has gold label '{label}', not one of {task.labels}.")
            doc["_label"] = label
        if task.record_fields:
            from fewshot_eval.evaluate.tasks.shapes import field_value

            doc["_fields"] = {f: field_value(doc, f, at(i), task.where("record_fields"), split) for f in task.record_fields}
        if task.id_field:
            if task.id_field not in doc:
                raise ConfigError(f"{at(i)}{task.where('id_field')}: field '{task.id_field}' missing in split '{split}'. Fields: {', '.join(doc)}.")
            doc["_id"] = str(doc[task.id_field])
        else:
            doc["_id"] = f"{split}-{i}"
        docs.append(doc)
    return docs


def _references(task: TaskDef, doc: Doc, split: str, at: str) -> list[str]:
    """The reference texts of a generation task's row: its ``references_field`` (a string or a list)."""
    from fewshot_eval.evaluate.tasks.shapes import field_value

    name = task.references_field or ""
    value = field_value(doc, name, at, task.where("references_field"), split)  # "answers.text": a key of a nested record (SQuAD, WMT)
    refs = [value] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else value
    if not isinstance(refs, list) or not refs or not all(isinstance(r, (str, int, float)) and not isinstance(r, bool) for r in refs):
        raise ConfigError(f"{at}{task.where('references_field')}: field '{name}' must hold a text or a non-empty list of texts, got {value!r}.")
    return [str(r) for r in refs]


@lru_cache(maxsize=128)
def _load_split_cached(task: TaskDef, split: str, lang: Optional[str], mirror: Optional[str] = None) -> tuple[Doc, ...]:
    # ``mirror``: $FEWSHOT_HF_MIRROR when read, part of the cache key only
    where = task.where("data")
    if isinstance(task.source, LocalSource):
        path = (task.path.parent / _fmt(task.source.splits[split], lang)).resolve()
        rows, lines = _read_local(path, where)
        docs = _normalise(task, rows, split, where, path, lines)
    else:
        docs = _normalise(task, _read_hf(task, split, lang), split, where)
    return tuple(docs)


def load_split(task: TaskDef, split: str, lang: Optional[str] = None) -> list[Doc]:
    """The rows of one split (one language), with ``_id`` and ``_label`` (str) added; cached."""
    if split not in task.source.splits:
        raise ConfigError(f"{task.where()}: unknown split '{split}'. Valid: {', '.join(task.splits)}.")
    if task.languages and lang not in task.languages:
        raise ConfigError(f"{task.where('languages')}: unknown language '{lang}'. Valid: {', '.join(task.languages)}.")
    import os

    mirror = os.environ.get(HF_MIRROR_ENV) if isinstance(task.source, HFSource) else None
    return [dict(d) for d in _load_split_cached(task, split, lang if task.languages else None, mirror)]


def check_template_fields(task: TaskDef, doc: Doc, split: str, at: str = "", templates: Optional[Iterable[str]] = None) -> None:
    """Every variable a template uses (``templates``: those names; default all) must be a data field
    (or a template var / ``candidate`` / ``target``)."""
    for tmpl in (task.templates[t] for t in templates) if templates is not None else task.templates.values():
        missing = sorted(v for v in tmpl.variables if v not in doc and v not in tmpl.var_names and v not in ("candidate", "target"))
        if missing:
            raise ConfigError(
                f"{at}task '{task.name}' template '{tmpl.name}': field '{missing[0]}' is not in the data "
                f"(split '{split}'). Fields: {', '.join(k for k in doc if not k.startswith('_'))}. ({task.path})"
            )


def check_split_fields(task: TaskDef, docs: Sequence[Doc], split: str, templates: Iterable[str]) -> None:
    """The fields of ``templates`` exist in every row of ``docs`` (one split that a job reads)."""
    names = list(templates)
    for i, doc in enumerate(docs):
        check_template_fields(task, doc, split, f"split '{split}' row {i} (id {doc.get('_id')}): ", names)


# ---------------------------------------------------------------- params -> what to evaluate


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


def split_data(task: TaskDef, params: dict[str, Any], lang: Optional[str], train_lang: Optional[str],
               *, demonstrations: bool = True) -> tuple[list[Doc], list[Doc]]:
    """(evaluated rows, demonstration pool) of one language: ``n_eval_samples`` applied; the pool is
    the train split in the demonstration language, never containing an evaluated row.

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
        if train_split == eval_split and demo_lang == lang:  # never demonstrate an evaluated row
            pool = demo_pool(None, pool, eval_docs)
    else:
        val = load_split(task, "validation", demo_lang) if "validation" in task.splits else None
        pool = demo_pool(None, val, eval_docs)
    templates = select_templates(task, params)
    check_split_fields(task, eval_docs, eval_split, templates)
    if demonstrations:
        check_split_fields(task, pool, train_split or "validation", templates)
    return eval_docs, pool

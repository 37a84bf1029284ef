"""A task definition's data: the rows of one split in one language, read, checked and normalised.

Sources (``data:`` of a task definition, see :mod:`~fewshot_eval.evaluate.tasks.definitions`):

* ``local``: JSON (a list of objects) or JSONL files next to the YAML; bad JSON names file and line;
* ``hf``: a HuggingFace ``datasets`` source. A hub repo (``<org>/<name>``) is read split by split
  through the hub cache (:mod:`~fewshot_eval.evaluate.tasks.hub_data`: only the files of the split a
  job reads are fetched); a builder (``json``, ``csv`` ...) over files through ``datasets.load_dataset``;
  when ``$FEWSHOT_HF_MIRROR`` holds a copy of the split (:func:`hf_mirror_file`), from that JSONL
  copy; a manual download (``$VARS`` in ``data_dir``/``data_files``) must be where they point.

Every row gets ``_id`` (``id_field`` or ``<split>-<row number>``) and ``_label`` (the gold as a
string; shaped tasks: see :mod:`~fewshot_eval.evaluate.tasks.shapes`), generation tasks
``_references``, tasks with ``record_fields`` ``_fields``. Splits are cached per process.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.tasks.definitions import HFSource, LocalSource, TaskDef

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
    from fewshot_eval.evaluate.tasks.hub_data import check_hub_id, hub_split, read_split

    check_hub_id(task)
    hs = hub_split(task, split, lang)
    if hs is not None:  # a hub repo: only this split's files, through the hub cache
        return read_split(hs)
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

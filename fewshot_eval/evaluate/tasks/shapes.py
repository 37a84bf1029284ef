"""Task shapes beyond one fixed candidate list: their task-definition keys and rows.

All of them are ranking tasks scored by the ordinary evaluator (so scoring modes, calibration and
recalc apply); a shape only changes where the candidates and the gold come from and how rows
are counted:

* ``choices_field: endings`` -- per-example candidates (HellaSwag-like): the candidates are the
  items of a list field, the gold (``label_field``) is an index into it; no ``labels``. A
  template's ``candidates`` is then one Jinja2 string over ``choice`` (default ``"{{ choice }}"``).
  The field may be a key of a nested record (``choices.text``, ARC/OpenBookQA's layout). With
  ``choice_labels_field: choices.label`` the gold is not an index but one of the labels in that
  list (ARC's ``answerKey`` "B" or "2"): its position picks the candidate.
* ``multiple_answers: true`` -- several correct answers: the gold field holds a list of labels
  (indices with ``choices_field``). ``accuracy`` counts the top candidate correct when it is any
  of them; ``all_f1`` asks for all of them: F1 of the top-``|gold|`` candidates against the gold set.
* ``group_field: question_id`` + ``positive_label: 1`` -- grouped sub-problems (MultiRC): each row
  is one answer option judged with the task's labels (true/false); ``group_field`` may be a list of
  (nested) fields that together name the group (``[idx.paragraph, idx.question]``, SuperGLUE's MultiRC);
  ``group_exact_match`` = the
  share of groups whose options are all right, ``f1a`` = F1 of the positive label over all options.
* ``kind: minimal_pairs`` + ``pair_fields: {good: sentence_good, bad: sentence_bad}`` (BLiMP):
  both sentences are scored whole from an empty context (lm-eval's BLiMP); correct when the
  good one gets the higher log-prob (``scoring=sum``). Candidates are labelled ``good``/``bad``.

Prediction rows keep the ordinary layout (``candidates`` with log-probs); grouped rows add
``group`` and ``positive``, multiple-answer rows have a list ``gold``. The shapes' metrics
(``all_f1``, ``group_exact_match``, ``f1a``) are :mod:`fewshot_eval.evaluate.metrics.shape_metrics`.

:func:`check_shape_keys` validates the ``kind`` of every task definition -- ``choice`` (default),
``generate`` (:mod:`~fewshot_eval.evaluate.tasks.generation_task`: ``references_field``, ``until``,
``max_new_tokens``), ``perplexity`` (:mod:`~fewshot_eval.evaluate.tasks.perplexity_task`), ``minimal_pairs``
-- and the keys each kind takes.
"""

from __future__ import annotations

from typing import Any, Optional

from fewshot_eval.config import ConfigError, check_keys
from fewshot_eval.evaluate.metrics.text_metrics import DEFAULT_GENERATION_METRICS

KINDS = ("choice", "generate", "perplexity", "minimal_pairs")  # a task definition's ``kind`` (default choice)
_SHAPE_KEYS = ("choices_field", "choice_labels_field", "multiple_answers", "group_field", "positive_label", "pair_fields",
               "references_field", "until", "max_new_tokens")
_ALLOWED = {  # the keys each kind accepts beyond the common ones
    "choice": {"label_field", "gold_label", "labels", "templates", "choices_field", "choice_labels_field", "multiple_answers", "group_field",
               "positive_label"},
    "generate": {"templates", "references_field", "until", "max_new_tokens"},  # evaluate/tasks/generation_task.py
    "perplexity": {"templates"},
    "minimal_pairs": {"pair_fields"},
}
_DEFAULT_METRICS = {"generate": DEFAULT_GENERATION_METRICS, "perplexity": ("word_perplexity", "byte_perplexity", "bits_per_byte"),
                    "minimal_pairs": ("accuracy",)}


def check_shape_keys(node: dict[str, Any], where: str) -> dict[str, Any]:
    """The task's kind and shape options, validated: keys that do not apply to the kind and
    missing required keys are errors naming the key."""
    kind = str(node.get("kind") or "choice")
    if kind not in KINDS:
        raise ConfigError(f"{where} key 'kind': unknown kind '{kind}'. Valid: {', '.join(KINDS)}.")
    for key in ("label_field", "gold_label", "labels", "templates", *_SHAPE_KEYS):
        if key in node and key not in _ALLOWED[kind]:
            raise ConfigError(f"{where} key '{key}': does not apply to a task of kind '{kind}' (remove it; "
                              f"that kind takes {', '.join(sorted(_ALLOWED[kind]))}).")
    shape: dict[str, Any] = {"kind": kind}
    required = {"choice": ["templates"], "generate": ["references_field", "templates"], "perplexity": ["templates"],
                "minimal_pairs": ["pair_fields"]}[kind]
    if kind == "choice" and "label_field" not in node and "gold_label" not in node:
        raise ConfigError(f"{where}: missing required key 'label_field' (the data's gold column; or 'gold_label': one gold for every row).")
    if kind == "choice" and node.get("choices_field") is None:
        required.append("labels")
    for key in required:
        if key not in node:
            raise ConfigError(f"{where}: missing required key '{key}'.")
    if kind in _DEFAULT_METRICS:
        shape["metrics"] = _DEFAULT_METRICS[kind]
    if kind == "minimal_pairs":
        pf = node["pair_fields"]
        if not isinstance(pf, dict) or sorted(pf) != ["bad", "good"] or not all(isinstance(v, str) and v.isidentifier() for v in pf.values()):
            raise ConfigError(f"{where} key 'pair_fields': expected {{good: <field>, bad: <field>}} naming two data fields, got {pf!r}.")
        shape.update(pair_fields=dict(pf), labels=["good", "bad"])
        return shape
    if kind == "generate":
        shape["references_field"] = str(node["references_field"])
    if kind != "choice":
        return shape
    if node.get("choices_field") is not None:
        if "labels" in node:
            raise ConfigError(f"{where} key 'labels': a task with choices_field takes its candidates from the data; remove 'labels'.")
        shape["choices_field"] = _field_name(node["choices_field"], "choices_field", where)
        shape["metrics"] = ("accuracy",)
        if node.get("choice_labels_field") is not None:
            shape["choice_labels_field"] = _field_name(node["choice_labels_field"], "choice_labels_field", where)
    elif node.get("choice_labels_field") is not None:
        raise ConfigError(f"{where} key 'choice_labels_field': only used with 'choices_field' (the candidates it labels); "
                          "remove it or add choices_field.")
    ma = node.get("multiple_answers", False)
    if not isinstance(ma, bool):
        raise ConfigError(f"{where} key 'multiple_answers': expected true or false, got {ma!r}.")
    if ma:
        shape["multiple_answers"] = True
        shape["metrics"] = ("accuracy", "all_f1")
    if node.get("group_field") is not None:
        if ma or shape.get("choices_field"):
            raise ConfigError(f"{where} key 'group_field': each grouped row is one sub-problem with the task's labels; "
                              "it does not combine with choices_field or multiple_answers.")
        if node.get("positive_label") is None:
            raise ConfigError(f"{where}: key 'group_field' needs 'positive_label' (the label meaning true, for f1a).")
        labels = [str(x) for x in node.get("labels") or []]
        if str(node["positive_label"]) not in labels:
            raise ConfigError(f"{where} key 'positive_label': '{node['positive_label']}' is not one of the labels {labels}.")
        gf = node["group_field"]
        names = [_field_name(f, "group_field", where) for f in (gf if isinstance(gf, list) else [gf])]
        if not names:
            raise ConfigError(f"{where} key 'group_field': expected a field name or a non-empty list of them, got {gf!r}.")
        shape.update(group_field=tuple(names), positive_label=str(node["positive_label"]),
                     metrics=("group_exact_match", "f1a", "accuracy"))
    elif node.get("positive_label") is not None:
        raise ConfigError(f"{where} key 'positive_label': only used with 'group_field'; remove it or add group_field.")
    return shape


def _field_name(value: Any, key: str, where: str) -> str:
    """A data field, possibly a key path into nested records (``choices.text``)."""
    if not isinstance(value, str) or not all(part.isidentifier() for part in value.split(".")):
        raise ConfigError(f"{where} key '{key}': expected a data field name such as 'endings' or 'choices.text', got {value!r}.")
    return value


def field_value(doc: dict[str, Any], name: str, at: str, where: str, split: str) -> Any:
    """The value of field ``name`` in a data row: a column, or a dotted path into nested records."""
    if name in doc:
        return doc[name]
    value: Any = doc
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ConfigError(f"{at}{where}: field '{name}' missing in split '{split}'. Fields: {', '.join(k for k in doc if not k.startswith('_'))}.")
        value = value[part]
    return value


_TEMPLATE_KEYS = {  # the keys of one template node, per kind (key -> required)
    "choice": {"prompt": True, "candidates": True, "vars": False},
    "choices_field": {"prompt": True, "candidates": False, "vars": False},  # a choice task with per-example candidates
    "generate": {"prompt": True, "target": False, "vars": False},
    "perplexity": {"document": True, "vars": False},
}


def compile_shape_templates(node: dict[str, Any], shape: dict[str, Any], labels: list[str], languages: Optional[list[str]], where: str) -> dict:
    """The task's named templates (``templates``: name -> template node), compiled as its kind
    wants them; every node is checked for unknown and missing keys (errors name file, template
    and the valid keys). ``minimal_pairs`` has none of its own: one ``default`` built from ``pair_fields``."""
    from fewshot_eval.evaluate.tasks.templates import compile_choice_template, compile_document_template, compile_generation_template, compile_template

    kind = shape["kind"]
    if kind == "minimal_pairs":
        pf = shape["pair_fields"]
        node = {"prompt": "{{ candidate }}", "candidates": {"good": "{{ %s }}" % pf["good"], "bad": "{{ %s }}" % pf["bad"]}}
        return {"default": compile_template("default", node, labels, languages, f"{where} key 'pair_fields'")}
    raw = node["templates"]
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where} key 'templates': expected a mapping of template names, got {raw!r}.")
    keys = _TEMPLATE_KEYS["choices_field" if shape.get("choices_field") else kind]
    out = {}
    for tname, tnode in raw.items():
        twhere = f"{where} key 'templates.{tname}'"
        check_keys(tnode, keys, twhere)
        if kind == "perplexity":
            out[str(tname)] = compile_document_template(str(tname), tnode, languages, twhere)
        elif kind == "generate":
            out[str(tname)] = compile_generation_template(str(tname), tnode, languages, twhere)
        elif shape.get("choices_field"):
            out[str(tname)] = compile_choice_template(str(tname), tnode, shape["choices_field"], languages, twhere)
        else:
            out[str(tname)] = compile_template(str(tname), tnode, labels, languages, twhere)
    return out


def _index(value: Any, n: int, at: str, where: str) -> str:
    try:
        i = int(value)
    except (TypeError, ValueError):
        i = -1
    if isinstance(value, bool) or not 0 <= i < n or str(i) != str(value).strip():
        raise ConfigError(f"{at}{where}: gold {value!r} is not an index into the {n} choices (0..{n - 1}).")
    return str(i)


def normalise_shape_row(task: Any, doc: dict[str, Any], split: str, at: str) -> None:
    """Set ``_label`` (the gold used for demonstrations) and, for several answers, ``_golds`` on
    one data row of a shaped task; a malformed row is an error naming file, line and key."""
    if task.kind == "perplexity":
        doc["_label"] = ""
        return
    if task.kind == "minimal_pairs":
        for role, f in task.pair_fields.items():
            if not isinstance(doc.get(f), str) or not doc[f]:
                raise ConfigError(f"{at}{task.where('pair_fields')}: field '{f}' ({role} sentence) missing or empty in split '{split}'. "
                                  f"Fields: {', '.join(doc)}.")
        doc["_label"] = "good"
        return
    gold = doc[task.label_field]
    if task.multiple_answers and not (isinstance(gold, list) and gold):
        raise ConfigError(f"{at}{task.where('multiple_answers')}: field '{task.label_field}' must hold a non-empty list of answers, got {gold!r}.")
    golds = gold if task.multiple_answers else [gold]
    if task.choices_field:
        items = field_value(doc, task.choices_field, at, task.where("choices_field"), split)
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{at}{task.where('choices_field')}: field '{task.choices_field}' must hold a non-empty list of candidates "
                              f"in split '{split}', got {items!r}.")
        doc[task.choices_field] = items  # a nested field, materialised for the templates (``choices.text``)
        if task.choice_labels_field:
            names = field_value(doc, task.choice_labels_field, at, task.where("choice_labels_field"), split)
            if not isinstance(names, list) or len(names) != len(items):
                raise ConfigError(f"{at}{task.where('choice_labels_field')}: field '{task.choice_labels_field}' must hold one label per "
                                  f"candidate ({len(items)}) in split '{split}', got {names!r}.")
            names = [str(n) for n in names]
            missing = [g for g in golds if str(g) not in names]
            if missing:
                raise ConfigError(f"{at}{task.where('label_field')}: gold {missing[0]!r} (field '{task.label_field}') is not one of the "
                                  f"choice labels {names} (field '{task.choice_labels_field}') in split '{split}'.")
            golds = [names.index(str(g)) for g in golds]
        golds = [_index(g, len(items), at, task.where("label_field")) for g in golds]
    else:
        golds = [str(g) for g in golds]
        bad = [g for g in golds if g not in task.labels]
        if bad:
            raise ConfigError(f"{at}{task.where('labels')}: split '{split}' has gold label '{bad[0]}', not one of {task.labels}.")
    if task.group_field:
        parts = [field_value(doc, f, at, task.where("group_field"), split) for f in task.group_field]
        doc["_group"] = parts[0] if len(parts) == 1 and isinstance(parts[0], (str, int)) else "/".join(map(str, parts))
    doc["_label"] = golds[0]
    if task.multiple_answers:
        doc["_golds"] = golds


def row_fields(task: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """What a prediction row of this task records beyond the ordinary keys: ``gold`` (a list with
    several answers), ``group`` and ``positive`` (grouped sub-problems)."""
    out: dict[str, Any] = {"gold": list(doc["_golds"]) if task.multiple_answers else doc["_label"]}
    if task.group_field:
        out.update(group=doc["_group"], positive=task.positive_label)
    return out

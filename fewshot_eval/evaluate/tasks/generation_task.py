"""Generation tasks (task definition ``kind: generate``): prompts -> generated outputs -> metrics.

Per sub-result: the trial's demonstrations are the template filled with each one's target
(``prompt`` with ``{{ target }}`` replaced), joined with ``train_sep`` before the test prompt,
which ends where the target would start (trailing spaces left to the model, as lm-eval's
``target_delimiter``: the model continues ``"A:"`` with ``" Paris"``). All examples' requests
go to the predictor's ``generate_until`` in one call (it batches them). Demonstrations that
do not fit ``max_length - max_new_tokens`` tokens are dropped from the end, never the test prompt.

Prediction row (one per evaluated example)::

    id, prompt, output, references, n_demos    # output: generated text, cut before the first stop string
    target_delimiter                           # the whitespace the prompt leaves to the model (" " after "A:"; chat: "")
    [demo_ids]                                 # demo_sampling=per_example: this example's demonstrations

With a chat model (model setting ``chat.enabled``) the demonstrations are user/assistant turns
and the test prompt the last user turn (:mod:`~fewshot_eval.evaluate.tasks.chat`); the model
generates the assistant's answer. Requests go through the resume cache like scored ones
(``evaluate.resume``: a killed job regenerates at most the batch in flight).

Settings (eval params, else the task definition, else the default): ``until`` (stop strings;
default ``train_sep``), ``max_new_tokens`` (32), ``do_sample`` (false: greedy) with
``temperature``; sampling is seeded with the trial's seed. A param that is missing or null
takes its default from ``conf/config.yaml`` (:func:`fewshot_eval.param_schema.typed_params`).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.predictor import GenerationRequest, Predictor
from fewshot_eval.evaluate.metrics.compute import compute_metrics
from fewshot_eval.evaluate.tasks.definitions import TaskDef
from fewshot_eval.evaluate.tasks.demonstrations import Sample, fit_demonstrations, join_prompt
from fewshot_eval.param_schema import typed_params

DEFAULT_MAX_NEW_TOKENS = 32
OPERATION = "generate_until"


def generation_settings(task: TaskDef, params: dict[str, Any]) -> dict[str, Any]:
    """``until`` (list), ``max_new_tokens``, ``do_sample``, ``temperature`` for ``task`` under ``params``;
    a bad value is a :class:`ConfigError` naming it."""
    p = typed_params(params)  # the fields of fewshot_eval/param_schema.py, defaults filled in
    until: Any = p.until
    if isinstance(until, dict):  # {<task>: stop strings}
        until = until.get(task.name)
    if until is None:
        until = task.until
    if until is None:
        until = [str(p.train_sep)]
    until = [until] if isinstance(until, str) else list(until)
    if not until or not all(isinstance(u, str) and u for u in until):
        raise ConfigError(f"until: expected a non-empty stop string or a list of them, got {params.get('until')!r}.")
    max_new = p.max_new_tokens
    if max_new is None:
        max_new = task.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
        raise ConfigError(f"max_new_tokens must be a positive integer, got {max_new!r}.")
    do_sample = p.do_sample or False
    if not isinstance(do_sample, bool):
        raise ConfigError(f"do_sample must be true or false, got {do_sample!r}.")
    temperature = p.temperature
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature <= 0:
        raise ConfigError(f"temperature must be a number > 0, got {temperature!r}.")
    if not do_sample and float(temperature) != 1.0:
        raise ConfigError(f"temperature={temperature} has no effect with greedy decoding: set do_sample=true to sample (or leave temperature at 1.0).")
    max_length = p.max_length
    if isinstance(max_length, int) and max_new >= max_length:
        raise ConfigError(f"max_new_tokens={max_new} leaves no room for the prompt in max_length={max_length}: use max_new_tokens < max_length.")
    return {"until": until, "max_new_tokens": int(max_new), "do_sample": do_sample, "temperature": float(temperature)}


def check_predictor_generates(task: TaskDef, predictor: str, predictor_cls: Any) -> None:
    """A generation task needs a predictor registered with ``generate_until`` (baselines only rank).
    ``predictor_cls``: its class, or an instance (a wrapper such as the resume cache's)."""
    ops = getattr(predictor_cls, "operations", frozenset())
    if OPERATION not in ops:
        raise ConfigError(
            f"task '{task.name}' generates text (kind: generate) but predictor '{predictor}' cannot generate "
            f"(its operations: {', '.join(sorted(ops)) or 'none'}). Use a language model (e.g. model=tiny_gpt2) "
            f"or drop this task for the baselines."
        )


def generate_rows(predictor: Predictor, task: TaskDef, tname: str, lang: Optional[str], demo_lang: Optional[str],
                  eval_docs: Sequence[dict], sample: Sample, params: dict[str, Any], seed: int,
                  description: Optional[str] = None, per_example: bool = False, chat: Any = None) -> list[dict[str, Any]]:
    """Generate an output for every evaluated example of one (task, template, language).

    ``per_example``: ``sample.docs`` holds one list of demonstrations per example (rows record
    ``demo_ids``); ``chat``: a :class:`~fewshot_eval.evaluate.tasks.chat.ChatFormat` (demonstrations as
    user/assistant turns, the model answers as the assistant)."""
    check_predictor_generates(task, predictor.name or type(predictor).__name__, predictor)
    settings = generation_settings(task, params)
    tmpl = task.templates[tname]
    sep = str(typed_params(params).train_sep)

    def demo(d: dict) -> Any:  # a filled template; for chat, (user turn, assistant turn)
        if chat is None:
            return tmpl.fill(d, demo_lang)  # type: ignore[call-arg]
        user, rest = tmpl.split(d, demo_lang)
        return user, tmpl.target_text(d, demo_lang) + rest  # type: ignore[union-attr]

    def context(demos: list, prompt: str) -> str:
        return chat.context(demos, prompt, sep, description) if chat is not None else join_prompt(demos, prompt, sep, description)

    shared = None if per_example else [demo(d) for d in sample.docs]
    budget = (predictor.max_length - settings["max_new_tokens"] - 1) if predictor.max_length else None
    requests, plans = [], []
    for j, doc in enumerate(eval_docs):
        demos = shared if shared is not None else [demo(d) for d in sample.docs[j]]
        prefix, _ = tmpl.split(doc, lang)
        prompt = prefix.rstrip(" \t")
        delimiter = "" if chat is not None else prefix[len(prompt):]  # what the model writes before the target (chat: nothing)
        k = fit_demonstrations(demos, lambda k: [context(demos[:k], prompt)],  # noqa: B023 (called here)
                               predictor.num_tokens, budget) if budget else len(demos)
        requests.append(GenerationRequest(context(demos[:k], prompt), tuple(settings["until"]), settings["max_new_tokens"],
                                          settings["do_sample"], settings["temperature"], seed, doc["_id"]))
        plans.append((j, doc, k, delimiter))
    outputs = predictor.generate_until(requests) if requests else []
    rows = []
    for (j, doc, k, delimiter), req, out in zip(plans, requests, outputs):
        row = {"id": doc["_id"], "prompt": req.context, "output": out, "references": list(doc["_references"]), "n_demos": k,
               "target_delimiter": delimiter}
        if per_example:
            row["demo_ids"] = [d["_id"] for d in sample.docs[j][:k]]
        rows.append(row)
    return rows


def ignored_by_generation(sid: str, scoring: str, calibrator: Optional[str]) -> list[str]:
    """Warnings for the ranking settings a generation sub-result ignores (scoring mode, calibrator)."""
    unused = ([f"scoring={scoring}"] if scoring != "sum" else []) + ([f"calibrator={calibrator}"] if calibrator else [])
    return [f"{sid}: generated text is not ranked: {' and '.join(unused)} ignored."] if unused else []


def is_generation_row(row: dict[str, Any]) -> bool:
    """A prediction row of a generation task (it stores ``output`` and ``references``, no candidates)."""
    return "output" in row and "references" in row


def generation_metrics(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Metrics ``names`` of generation rows, from their stored outputs and references (no model)."""
    return compute_metrics([r["references"] for r in rows], [r["output"] for r in rows], None, names, rows)

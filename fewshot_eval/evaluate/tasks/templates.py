"""Named Jinja2 prompt templates with a slot for the candidate.

A template has a ``prompt`` that uses ``{{ candidate }}`` exactly once (unfiltered) and a
verbalisation per label (``candidates``, Jinja2 too, so it may use fields such as
``{{ choice1 }}``). The prompt is split at the slot into the *prefix* (context) and the
*suffix* (text after the candidate, scored with it); a demonstration is the prompt filled
with the gold candidate. ``vars`` gives per-language words (``{en: {yes: Yes}, de: {yes: Ja}}``);
each example is rendered with the words of its own language.

A generation template (task ``kind: generate``) has a ``prompt`` that uses ``{{ target }}``
exactly once and an optional ``target`` (Jinja2; default: the example's first reference): the
prompt before the slot is what the model continues; a demonstration is the prompt filled
with the target.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Optional

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from fewshot_eval.config import ConfigError

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
_SLOT = "\x00CANDIDATE\x00"


@dataclass
class PromptTemplate:
    """What choice and generation templates share: a Jinja2 ``prompt`` with one slot variable,
    per-language words (``vars``), and the rendering of both around a data row."""

    name: str
    prompt: jinja2.Template
    vars: dict[str, dict[str, str]] = field(default_factory=dict)  # lang -> {variable: text}
    variables: frozenset[str] = frozenset()  # data fields + vars the template reads
    var_names: frozenset[str] = frozenset()
    source: str = ""

    def _env(self, doc: dict[str, Any], lang: Optional[str]) -> dict[str, Any]:
        """The variables a row renders with: its fields (not the ``_``-prefixed ones) and the words of ``lang``."""
        env = {k: v for k, v in doc.items() if not k.startswith("_")}
        if self.vars:
            env.update(self.vars.get(lang or "", self.vars.get("default", {})))
        return env

    def _split_at(self, doc: dict[str, Any], lang: Optional[str], slot: str) -> tuple[str, str]:
        """(prefix, suffix) of the prompt rendered around the variable ``slot`` (used exactly once)."""
        text = self.prompt.render({**self._env(doc, lang), slot: _SLOT})
        if text.count(_SLOT) != 1:
            raise ConfigError(f"template '{self.name}': the prompt must use {{{{ {slot} }}}} exactly once and unfiltered: {self.source!r}")
        prefix, suffix = text.split(_SLOT)
        return prefix, suffix


@dataclass
class Template(PromptTemplate):
    """A choice template: the prompt's ``{{ candidate }}`` slot takes each label's verbalisation."""

    candidates: dict[str, jinja2.Template] = field(default_factory=dict)  # label -> verbalisation
    choices_field: Optional[str] = None  # per-example candidates: label i verbalises item i of this list field
    choice: Optional[jinja2.Template] = None  # that item's verbalisation (variable ``choice``)

    def verbalise(self, doc: dict[str, Any], label: str, lang: Optional[str] = None) -> str:
        if self.choices_field and self.choice is not None:
            return self.choice.render({**self._env(doc, lang), "choice": doc[self.choices_field][int(label)]})
        return self.candidates[label].render(self._env(doc, lang))

    def render(self, doc: dict[str, Any], lang: Optional[str] = None) -> str:
        """The prompt rendered without a candidate slot (a perplexity task's document)."""
        return self.prompt.render(self._env(doc, lang))

    def split(self, doc: dict[str, Any], lang: Optional[str] = None) -> tuple[str, str]:
        """(prefix, suffix): the prompt before and after the candidate slot."""
        return self._split_at(doc, lang, "candidate")

    def fill(self, doc: dict[str, Any], label: str, lang: Optional[str] = None) -> str:
        """The prompt filled with the verbalisation of ``label`` (a demonstration, for the gold label)."""
        prefix, suffix = self.split(doc, lang)
        return prefix + self.verbalise(doc, label, lang) + suffix


def _compile(text: str, where: str) -> tuple[jinja2.Template, set[str]]:
    try:
        template, variables = _compiled(text)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"{where}: Jinja2 syntax error in {text!r}: {e.message}") from None
    return template, set(variables)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> tuple[jinja2.Template, frozenset[str]]:
    """A template's source compiled once per process (a few ms each; task definitions copied from one
    another share theirs, and a plan loads every task definition of its sweep)."""
    ast = _ENV.parse(text)
    return _ENV.from_string(text), frozenset(meta.find_undeclared_variables(ast))


def _compile_prompt(node: dict[str, Any], slot: str, purpose: str, where: str) -> tuple[jinja2.Template, set[str], str]:
    """A template node's ``prompt``: (compiled, variables it reads, source); it must use ``slot``."""
    prompt_src = node["prompt"]
    if not isinstance(prompt_src, str):
        raise ConfigError(f"{where} key 'prompt': expected a string, got {prompt_src!r}.")
    prompt, variables = _compile(prompt_src, f"{where} key 'prompt'")
    if slot not in variables:
        raise ConfigError(f"{where} key 'prompt': must contain {{{{ {slot} }}}} ({purpose}): {prompt_src!r}.")
    return prompt, variables, prompt_src


def _compile_vars(node: dict[str, Any], languages: Optional[list[str]], where: str) -> tuple[dict[str, dict[str, str]], frozenset[str]]:
    """A template node's optional ``vars`` (``{language: {name: text}}``): (the words, their names).
    Every language defines the same names; each of ``languages`` (or ``default``) has an entry."""
    raw_vars = node.get("vars") or {}
    if not isinstance(raw_vars, dict) or not all(isinstance(v, dict) for v in raw_vars.values()):
        raise ConfigError(f"{where} key 'vars': expected {{language: {{name: text}}}}, got {raw_vars!r}.")
    tvars = {str(lang): {str(k): str(v) for k, v in d.items()} for lang, d in raw_vars.items()}
    var_names: set[str] = set()
    if tvars:
        names = [set(d) for d in tvars.values()]
        var_names = set.union(*names)
        for lang, d in tvars.items():
            if set(d) != var_names:
                raise ConfigError(f"{where} key 'vars.{lang}': defines {sorted(d)}, the other languages {sorted(var_names)}.")
        needed = languages or []
        missing = [lang for lang in needed if lang not in tvars and "default" not in tvars]
        if missing:
            raise ConfigError(f"{where} key 'vars': no words for languages {missing} (add them or a 'default' entry).")
        if not languages and "default" not in tvars:
            raise ConfigError(f"{where} key 'vars': a task without languages needs a 'default' entry, got {sorted(tvars)}.")
    return tvars, frozenset(var_names)


def compile_template(name: str, node: dict[str, Any], labels: list[str], languages: Optional[list[str]], where: str) -> Template:
    """Validate and compile one template node (``prompt``, ``candidates``, optional ``vars``)."""
    prompt, variables, prompt_src = _compile_prompt(node, "candidate", "the slot for each candidate", where)
    cands = node["candidates"]
    if not isinstance(cands, dict):
        raise ConfigError(f"{where} key 'candidates': expected {{label: verbalisation}}, got {cands!r}.")
    cands = {str(k): v for k, v in cands.items()}
    if sorted(cands) != sorted(labels):
        raise ConfigError(f"{where} key 'candidates': labels {sorted(cands)} must equal the task's labels {sorted(labels)}.")
    compiled = {}
    for label in labels:
        compiled[label], used = _compile(str(cands[label]), f"{where} key 'candidates.{label}'")
        variables |= used
    tvars, var_names = _compile_vars(node, languages, where)
    return Template(name=name, prompt=prompt, candidates=compiled, vars=tvars, variables=frozenset(variables - {"candidate"}),
                    var_names=var_names, source=prompt_src)


def compile_choice_template(name: str, node: dict[str, Any], choices_field: str, languages: Optional[list[str]], where: str) -> Template:
    """A template whose candidates are the items of the list field ``choices_field``: ``prompt``
    with ``{{ candidate }}``, optional ``candidates`` = one Jinja2 string verbalising an item
    (variable ``choice``, default ``"{{ choice }}"``), optional ``vars``."""
    cand = node.get("candidates", "{{ choice }}")
    if not isinstance(cand, str):
        raise ConfigError(f"{where} key 'candidates': with choices_field, one Jinja2 string verbalising an item "
                          f"(variable 'choice', e.g. \"{{{{ choice }}}}\"), got {cand!r}.")
    base = compile_template(name, {"prompt": node.get("prompt"), "candidates": {"0": cand}, "vars": node.get("vars")}, ["0"], languages, where)
    base.choices_field = choices_field
    base.choice = base.candidates.pop("0")
    base.variables = frozenset((base.variables - {"choice"}) | {choices_field})
    return base


def compile_document_template(name: str, node: dict[str, Any], languages: Optional[list[str]], where: str) -> Template:
    """A perplexity task's template: ``document`` (Jinja2, no candidate slot), optional ``vars``."""
    text = node.get("document")
    if not isinstance(text, str):
        raise ConfigError(f"{where} key 'document': expected a Jinja2 string such as \"{{{{ text }}}}\", got {text!r}.")
    document, variables = _compile(text, f"{where} key 'document'")
    tvars, var_names = _compile_vars(node, languages, where)
    return Template(name=name, prompt=document, vars=tvars, variables=frozenset(variables), var_names=var_names, source=text)


@dataclass
class GenerationTemplate(PromptTemplate):
    """A prompt with a ``{{ target }}`` slot: the model generates what goes there."""

    target: Optional[jinja2.Template] = None  # the demonstrated text; None: the first reference

    def split(self, doc: dict[str, Any], lang: Optional[str] = None) -> tuple[str, str]:
        """(prefix, suffix): the prompt before and after the target slot."""
        return self._split_at(doc, lang, "target")

    def target_text(self, doc: dict[str, Any], lang: Optional[str] = None) -> str:
        """The text a demonstration shows in the slot (``target``, else the first reference)."""
        if self.target is None:
            return doc["_references"][0]
        return self.target.render(self._env(doc, lang))

    def fill(self, doc: dict[str, Any], lang: Optional[str] = None) -> str:
        """The prompt filled with the target (a demonstration)."""
        prefix, suffix = self.split(doc, lang)
        return prefix + self.target_text(doc, lang) + suffix


def compile_generation_template(name: str, node: dict[str, Any], languages: Optional[list[str]], where: str) -> GenerationTemplate:
    """Validate and compile one generation template node (``prompt``, optional ``target`` and ``vars``)."""
    prompt, variables, prompt_src = _compile_prompt(node, "target", "where the model writes its answer", where)
    target = None
    if node.get("target") is not None:
        target, used = _compile(str(node["target"]), f"{where} key 'target'")
        variables |= used
    tvars, var_names = _compile_vars(node, languages, where)
    return GenerationTemplate(name=name, prompt=prompt, target=target, vars=tvars, variables=frozenset(variables - {"target"}),
                              var_names=var_names, source=prompt_src)

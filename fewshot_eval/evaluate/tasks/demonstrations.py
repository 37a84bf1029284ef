"""Choosing demonstrations and building prompts.

* Pool: the train split (``params['train_set']`` overrides), in the demonstration language.
  A task without a train split draws from its validation split minus the evaluated rows.
* Sampling: ``random.Random(seed + trial)`` picks ``nshot`` rows without replacement, so a
  trial's demonstrations are the same on every machine and for every template and language
  of the trial. ``nshot = -1``: the whole pool, shuffled by the same generator.
  ``nshot`` larger than the pool: a warning and the pool size (recorded in ``info``).
* ``balanced``: ``nshot / n_classes`` rows per class (error if not divisible or a class is short).
* ``demo_sampling=per_example``: each evaluated example draws its own demonstrations, as
  lm-evaluation-harness's ``ContextSampler`` does: one ``random.Random(seed + trial)``, then
  ``rng.sample(pool, nshot)`` for each example in order (:func:`sample_per_example`) -- lm-eval's
  draw when its fewshot split differs from its test split as configured.
* ``demo_sampling=per_example_lm_eval``: lm-eval's whole rule (:func:`sample_lm_eval`): when the
  fewshot split equals the test split as configured (both unset counts as equal:
  :func:`~fewshot_eval.evaluate.tasks.selection.lm_eval_drops_evaluated`), ``rng.sample(pool,
  nshot + 1)``, the evaluated example removed, the first ``nshot`` kept (the pool is then the whole
  split); else as ``per_example``. Example i gets the rows lm-eval gives it with
  ``fewshot_random_seed=seed + trial``.
* Prompt: ``description``, the demonstrations (template filled with the gold label) and the
  test prompt, joined by ``train_sep``. When a model's ``max_length`` is exceeded, only the
  first demonstrations that fit are kept (never the test prompt or a candidate is cut).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.param_schema import choices

Doc = dict[str, Any]


@dataclass
class Sample:
    docs: list[Doc]
    requested: int  # nshot as asked (-1 = all)
    warnings: list[str] = field(default_factory=list)


def sample_demonstrations(pool: Sequence[Doc], nshot: int, seed: int, *, balanced: bool = False, labels: Sequence[str] = (), task: str = "") -> Sample:
    """Draw the trial's demonstrations from ``pool`` (rows with ``_label``), reproducibly."""
    if nshot < -1:
        raise ConfigError(f"nshot must be >= -1 (-1 = the whole train set), got {nshot}.")
    if nshot == 0:
        return Sample([], nshot)
    rng = random.Random(seed)
    warnings: list[str] = []
    if nshot == -1:
        docs = list(pool)
        rng.shuffle(docs)
        return Sample(docs, nshot)
    if balanced:
        classes = list(labels) or sorted({d["_label"] for d in pool})
        if nshot % len(classes):
            raise ConfigError(
                f"balanced=true for task '{task}': nshot={nshot} is not divisible by the {len(classes)} classes "
                f"{classes}. Use a multiple of {len(classes)} or balanced=false."
            )
        per = nshot // len(classes)
        docs = []
        for c in classes:
            members = [d for d in pool if d["_label"] == c]
            if len(members) < per:
                raise ConfigError(f"balanced=true for task '{task}': class '{c}' has {len(members)} demonstration rows, {per} needed for nshot={nshot}.")
            docs.extend(rng.sample(members, per))
        rng.shuffle(docs)
        return Sample(docs, nshot)
    k = nshot
    if k > len(pool):
        warnings.append(f"task '{task}': nshot={nshot} > {len(pool)} demonstration rows; using {len(pool)}.")
        k = len(pool)
    return Sample(rng.sample(list(pool), k), nshot, warnings)


DEMO_SAMPLING = choices("demo_sampling")  # the schema holds them (fewshot_eval/param_schema.py)
PER_EXAMPLE = ("per_example", "per_example_lm_eval")


def check_demo_sampling(value: Any, *, balanced: bool = False) -> str:
    """``demo_sampling`` (null = ``per_trial``); an unknown value lists the valid ones."""
    mode = value or "per_trial"
    if mode not in DEMO_SAMPLING:
        raise ConfigError(f"demo_sampling: unknown value {value!r}. Valid: per_trial (one demonstration set per trial, shared by "
                          f"every example), per_example (each example draws its own, as lm-evaluation-harness does), "
                          f"per_example_lm_eval (as per_example, with lm-eval's k / k+1 rule: k+1 drawn and the evaluated "
                          f"example dropped when the demonstration split equals the evaluated one as configured).")
    if mode in PER_EXAMPLE and balanced:
        raise ConfigError(f"demo_sampling={mode} cannot be combined with balanced=true; use demo_sampling=per_trial or balanced=false.")
    return mode


def sample_per_example(pool: Sequence[Doc], n_examples: int, nshot: int, seed: int, *, task: str = "") -> Sample:
    """Demonstrations for each of ``n_examples`` examples, drawn the way lm-evaluation-harness's
    ``ContextSampler.sample`` draws them (one generator for the task, one ``sample`` per example in
    order). ``Sample.docs`` is then a list per example; ``nshot=-1``: the whole pool, shuffled per example."""
    if nshot < -1:
        raise ConfigError(f"nshot must be >= -1 (-1 = the whole train set), got {nshot}.")
    if nshot == 0:
        return Sample([[] for _ in range(n_examples)], nshot)
    rng = random.Random(seed)
    population = list(pool)
    warnings = []
    k = len(population) if nshot == -1 else nshot
    if k > len(population):
        warnings.append(f"task '{task}': nshot={nshot} > {len(population)} demonstration rows; using {len(population)}.")
        k = len(population)
    return Sample([rng.sample(population, k) for _ in range(n_examples)], nshot, warnings)


def _content(doc: Doc) -> Doc:
    """A row as its dataset holds it (lm-eval compares whole documents), without our ``_`` keys."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def sample_lm_eval(pool: Sequence[Doc], evaluated: Sequence[Doc], nshot: int, seed: int, *, drop_evaluated: bool,
                   task: str = "") -> Sample:
    """Demonstrations for each evaluated example exactly as lm-eval's ``ContextSampler.sample`` draws them
    with one ``random.Random(seed)`` for the task: ``drop_evaluated`` (its fewshot split equals its test
    split as configured) -> ``nshot + 1`` rows, those equal to the evaluated example removed, the first
    ``nshot`` kept (fewer left, a duplicate of it was drawn too: a fresh ``sample`` of the pool without it);
    else ``nshot`` rows. ``nshot=-1``: the whole pool (without the evaluated example). ``nshot`` above the
    pool (lm-eval fails): a warning and the pool's size."""
    if nshot < -1:
        raise ConfigError(f"nshot must be >= -1 (-1 = the whole train set), got {nshot}.")
    if nshot == 0:
        return Sample([[] for _ in evaluated], nshot)
    rng = random.Random(seed)
    population = list(pool)
    extra = 1 if drop_evaluated else 0
    room = max(0, len(population) - extra)
    warnings = []
    k = room if nshot == -1 else nshot
    if k > room:
        warnings.append(f"task '{task}': nshot={nshot} > {room} demonstration rows (lm-eval would fail); using {room}.")
        k = room
    docs = []
    for doc in evaluated:
        if not drop_evaluated:
            docs.append(rng.sample(population, k))
            continue
        own = _content(doc)
        res = [d for d in rng.sample(population, k + 1) if _content(d) != own][:k]
        if len(res) < k:
            rest = [d for d in population if _content(d) != own]
            res = rng.sample(rest, min(k, len(rest)))
        docs.append(res)
    return Sample(docs, nshot, warnings)


def demo_pool(train: Optional[list[Doc]], validation: Optional[list[Doc]], evaluated: Sequence[Doc]) -> list[Doc]:
    """The train split, or (no train split) the validation split minus the evaluated rows."""
    if train is not None:
        return train
    if validation is None:
        return []
    ids = {d["_id"] for d in evaluated}
    return [d for d in validation if d["_id"] not in ids]


def join_prompt(demos: Sequence[str], prompt: str, sep: str, description: Optional[str]) -> str:
    parts = ([description] if description else []) + list(demos) + [prompt]
    return sep.join(parts)


def fit_demonstrations(
    demos: Sequence[str],
    build: Callable[[int], list[str]],
    num_tokens: Callable[[str], int],
    max_length: Optional[int],
) -> int:
    """How many of the first demonstrations fit: the largest k such that every text
    ``build(k)`` returns (context + continuation, one per candidate/variant) has at most
    ``max_length + 1`` tokens (the model sees all but the last one). Binary search; the
    texts grow with k."""
    if not max_length or not demos:
        return len(demos)

    def fits(k: int) -> bool:
        return max(num_tokens(t) for t in build(k)) <= max_length + 1

    if fits(len(demos)):
        return len(demos)
    lo, hi = 0, len(demos)  # fits(lo) assumed (0 demonstrations are always used), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo

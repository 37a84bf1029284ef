"""Scoring modes: per-token log-probs of each candidate -> one score per candidate.

Per example, every candidate's continuation is ``verbalisation + suffix`` (the text after
the slot). Over the candidates' continuation token ids we count the shared prefix ``p``
(tokens at the start all candidates have in common) and the shared suffix ``s``.

* ``sum``: sum of the continuation's log-probs = lm-eval's ``loglikelihood``.
* ``mean``: mean log-prob of the continuation tokens after the shared prefix.
* ``suffix``: sum of the log-probs of the shared suffix only (the text after a candidate
  placed mid-prompt, conditioned on the candidate); needs a template with text after it.
* ``unconditional-norm``: ``sum`` minus the continuation's log-prob after
  ``params['unconditional_prompt']`` (same continuation, context = that prompt).
* ``char-norm``: ``sum`` divided by the candidate's length in characters (its text without
  leading whitespace) = lm-evaluation-harness's ``acc_norm``, which divides by the length of the
  choice and leaves out the target delimiter (the space before it).

Everything here is pure and works on stored prediction rows too (see rescoring.py).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.param_schema import choices

SCORING_MODES = choices("scoring")  # the schema holds them (fewshot_eval/param_schema.py)


def check_mode(mode: Optional[str]) -> str:
    mode = mode or "sum"
    if mode not in SCORING_MODES:
        raise ConfigError(f"scoring: unknown mode '{mode}'. Valid: {', '.join(SCORING_MODES)}.")
    return mode


def shared_prefix_suffix(token_lists: Sequence[Sequence[int]]) -> tuple[int, int]:
    """(shared prefix, shared suffix) token counts of the candidates' continuations; they never overlap."""
    if len(token_lists) < 2:
        return 0, 0
    shortest = min(len(t) for t in token_lists)
    p = 0
    while p < shortest and all(t[p] == token_lists[0][p] for t in token_lists):
        p += 1
    s = 0
    while s < shortest - p and all(t[-1 - s] == token_lists[0][-1 - s] for t in token_lists):
        s += 1
    return p, s


def score_candidates(item: dict[str, Any], mode: str, *, where: str = "") -> list[float]:
    """Scores of one scored item (an example or a calibration variant).

    ``item`` = ``{"n_shared_prefix": p, "n_shared_suffix": s, "candidates": [{"logprobs": [...],
    "uncond_logprobs": [...] | None}, ...]}``. Baseline rows (no logprobs) keep ``score``.
    """
    cands = item["candidates"]
    if any(c.get("logprobs") is None for c in cands):
        return [float(c["score"]) for c in cands]
    p, s = int(item.get("n_shared_prefix", 0)), int(item.get("n_shared_suffix", 0))
    out = []
    for c in cands:
        lp = c["logprobs"]
        if mode == "sum":
            out.append(float(sum(lp)))
        elif mode == "mean":
            tail = lp[p:] or lp
            out.append(float(sum(tail) / len(tail)))
        elif mode == "suffix":
            if s == 0:
                raise ConfigError(
                    f"scoring=suffix{where}: the candidates share no text after the candidate slot; "
                    "use a template with the candidate mid-prompt or another scoring mode (sum, mean, unconditional-norm)."
                )
            out.append(float(sum(lp[len(lp) - s :])))
        elif mode == "unconditional-norm":
            u = c.get("uncond_logprobs")
            if u is None:
                raise ConfigError(
                    f"scoring=unconditional-norm{where}: no unconditional log-probs stored; a run computes them only "
                    "under scoring=unconditional-norm. Re-run the evaluation with scoring=unconditional-norm."
                )
            out.append(float(sum(lp) - sum(u)))
        elif mode == "char-norm":
            text = c.get("text")
            if text is None:
                raise ConfigError(f"scoring=char-norm{where}: no candidate text stored for this row.")
            out.append(float(sum(lp)) / max(len(str(text).lstrip()), 1))
        else:
            check_mode(mode)
    return out


def argmax(scores: Sequence[float]) -> int:
    """Index of the best score; ties go to the first."""
    best = 0
    for i, v in enumerate(scores):
        if v > scores[best]:
            best = i
    return best

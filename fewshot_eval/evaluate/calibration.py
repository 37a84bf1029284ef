"""Calibration ``average_option`` with the original's option syntax.

``params['calibration_options'][task]`` is a list of options such as
``"sentence1:: | sentence2::"``: ``|``-separated ``field::value`` replacements (an empty value
blanks the field) applied to a copy of the example -> content-free variants, scored with the
same demonstrations. Per candidate, the mean score over the variants is subtracted:
``calibrated[c] = score[c] - mean_v score_v[c]``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.param_schema import choices

CALIBRATORS = choices("calibrator")  # the schema holds them (fewshot_eval/param_schema.py)


def check_calibrator(name: Optional[str]) -> Optional[str]:
    if name in (None, "", "none"):
        return None
    if name not in CALIBRATORS:
        raise ConfigError(f"calibrator: unknown calibrator '{name}'. Valid: null, {', '.join(CALIBRATORS)}.")
    return name


def parse_option(option: str, task: str = "") -> list[tuple[str, str]]:
    """``"premise:: | hypothesis::N/A"`` -> ``[("premise", ""), ("hypothesis", "N/A")]``."""
    pairs = []
    for part in option.split("|"):
        part = part.strip()
        if not part:
            continue
        if "::" not in part:
            raise ConfigError(
                f"calibration_options.{task}: bad option '{option}': part '{part}' is not 'field::value' "
                "(write 'sentence1::' to blank a field, 'sentence1::N/A' to replace it)."
            )
        key, value = part.split("::", 1)
        pairs.append((key.strip(), value.strip()))
    if not pairs:
        raise ConfigError(f"calibration_options.{task}: empty option {option!r}; expected e.g. 'sentence1:: | sentence2::'.")
    return pairs


def task_options(params: dict[str, Any], task: str) -> list[str]:
    opts = params.get("calibration_options") or {}
    value = opts.get(task) if isinstance(opts, dict) else opts
    if value in (None, "", []):
        raise ConfigError(
            f"calibrator=average_option needs calibration_options.{task}: a list like [\"sentence1:: | sentence2::\"]. "
            f"Tasks with options: {', '.join(opts) if isinstance(opts, dict) and opts else '(none)'}."
        )
    return [value] if isinstance(value, str) else [str(v) for v in value]


def apply_option(doc: dict[str, Any], pairs: Sequence[tuple[str, str]], task: str, option: str) -> dict[str, Any]:
    """A content-free copy of ``doc``; a field the data lacks is an error."""
    out = dict(doc)
    for key, value in pairs:
        if key not in doc or key.startswith("_"):
            fields = ", ".join(k for k in doc if not k.startswith("_"))
            raise ConfigError(f"calibration_options.{task}: option '{option}' names field '{key}', not in the data. Fields: {fields}.")
        out[key] = value
    return out


def calibrate(scores: Sequence[float], variant_scores: Sequence[Sequence[float]]) -> list[float]:
    """``score[c] - mean over variants of variant_score[c]``."""
    if not variant_scores:
        return list(scores)
    n = len(variant_scores)
    return [s - sum(v[c] for v in variant_scores) / n for c, s in enumerate(scores)]

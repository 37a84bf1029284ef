"""Reading a ranking task's prediction rows: is a prediction right, a candidate's final score, and
the rows as the uncalibrated run would have them. Pure functions; metrics, the evaluator, recalc
and reports share them."""

from __future__ import annotations

from typing import Any, Sequence


def is_correct(pred: str, gold: Any) -> bool:
    """The prediction is the gold label, or one of them when there are several."""
    return pred in gold if isinstance(gold, list) else pred == gold


def final_score(candidate: dict[str, Any]) -> float:
    """A candidate's final score: its calibrated score when the run was calibrated, else its score."""
    return float(candidate["calibrated"] if candidate.get("calibrated") is not None else candidate["score"])


def uncalibrated_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the uncalibrated run would have them (``pred_raw`` as ``pred``, no ``calibrated``):
    the input of a row metric's ``<name>_raw``."""
    out = []
    for r in rows:
        pred = r.get("pred_raw", r.get("pred"))
        new = {**r, "pred": pred, "correct": is_correct(pred, r.get("gold"))}
        if "candidates" in r:
            new["candidates"] = [{k: v for k, v in c.items() if k != "calibrated"} for c in r["candidates"]]
        out.append(new)
    return out

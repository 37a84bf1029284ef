"""Resume inside a trial: a job killed mid-trial rescores only what its score cache does not hold."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.evaluate.backends.predictor import Loglik, Request
from fewshot_eval.evaluate.resume import CachedPredictor, from_json, to_json
from fewshot_eval.faults import FAULT_ENV
from fewshot_eval.store.score_cache import ScoreCache


def _rows(path: Path) -> int:
    db = sqlite3.connect(str(path))
    try:
        return int(db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
    finally:
        db.close()


def _trial_files(rdir: Path) -> dict[str, list]:
    return {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in sorted((rdir / "trial0").glob("*.predictions.jsonl"))}


def _same(a, b, tol: float = 1e-5) -> bool:
    """Equal structures; floats within ``tol`` (a resumed trial scores only the uncached requests,
    so the prefix tree groups them differently: float32 sums differ in the last digits)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= tol * max(1.0, abs(a))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module")
def clm():
    from fewshot_eval.evaluate.evaluator import build_predictor

    return build_predictor({"name": "tiny_gpt2", "predictor": "clm", "weights": "tiny-gpt2"},
                           {"device": "cpu", "dtype": "float32", "batch_size": 4, "max_length": 256})


def _requests() -> list[Request]:
    ctx = "The cat sat on the mat.\n\nQuestion: where did the cat sit?\nAnswer:"
    reqs = [Request(ctx + f" ({i})", cont, str(i), cont) for i in range(5) for cont in (" on the mat", " in the hat")]
    return reqs + [Request("Answer:", " on the mat", "0", "x"), reqs[0]]  # a repeated request is scored once


class _Spy(ScoreCache):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.commits: list[int] = []

    def put_many(self, items) -> None:
        items = list(items)
        self.commits.append(len(items))
        super().put_many(items)


@pytest.mark.parametrize("reports", [True, False], ids=["batches-reported", "chunked-by-the-cache"])
def test_each_batch_is_committed_as_it_is_scored_and_reused_later(clm, tmp_path: Path, reports: bool) -> None:
    reqs = _requests()
    expected = clm.loglikelihood(reqs)
    if not reports:  # a predictor that does not report its batches: the cache calls it per batch_size requests
        clm.reports_batches = frozenset()
    try:
        with _Spy(tmp_path / "c.sqlite") as store:
            cached = CachedPredictor(clm, store, "ns")
            cached.begin("t", ["a"], 0)
            got = cached.loglikelihood(reqs)
            assert sum(store.commits) == len(store) == 11
            if reports:  # committed per forward call (prefix-tree rows may finish several requests each), not at the end
                assert len([c for c in store.commits if c]) >= 2, store.commits
            else:
                assert max(store.commits) <= clm.batch_size, store.commits
            assert cached.scored == 11 and cached.reused == 0 and clm.on_batch is None
    finally:
        vars(clm).pop("reports_batches", None)  # back to the class's
    assert [x for g in got for x in g.logprobs] == pytest.approx([x for e in expected for x in e.logprobs], abs=1e-5)
    assert [g.tokens for g in got] == [e.tokens for e in expected]
    with ScoreCache(tmp_path / "c.sqlite") as store:  # a rerun: every answer from disk, equal to the first
        again = CachedPredictor(clm, store, "ns")
        again.begin("t", ["a"], 0)
        assert again.loglikelihood(reqs) == got and again.scored == 0 and again.reused == len(reqs)
        other = CachedPredictor(clm, store, "ns")  # another trial seed (begin state) is another key
        other.begin("t", ["a"], 1)
        other.loglikelihood(reqs[:2])
        assert other.scored == 2


class _Lengths:
    """A predictor without a model: the log-likelihood of a continuation is minus its length."""

    batch_size = 4

    def __init__(self) -> None:
        self.scored = 0

    def begin(self, task, train_labels, seed) -> None:  # noqa: ANN001
        pass

    def loglikelihood(self, requests):  # noqa: ANN001, ANN201
        self.scored += len(requests)
        return [Loglik([-float(len(r.continuation))]) for r in requests]


def test_damaged_score_cache_rows_are_dropped_rescored_and_named_once(tmp_path: Path, caplog) -> None:
    """A row holding a wrong value (valid SQLite) used to fail the job with 'Expecting value: line 1 column 1'
    (the file not named), and fail it again on every retry."""
    reqs = _requests()[:6]
    path = tmp_path / "trial0.sqlite"
    with ScoreCache(path) as store:
        first = CachedPredictor(_Lengths(), store, "ns")
        first.begin("t", ["a"], 0)
        expected = first.loglikelihood(reqs)
        keys = [first.key("loglikelihood", r) for r in reqs]
    db = sqlite3.connect(str(path))
    db.execute("UPDATE scores SET value = 'garbage' WHERE key = ?", (keys[0],))  # not JSON
    db.execute("UPDATE scores SET value = (SELECT value FROM scores WHERE key = ?) WHERE key = ?", (keys[2], keys[1]))  # another row's
    db.commit()
    db.close()
    with ScoreCache(path) as store:
        store.put_many([(keys[3], "{not json")])  # sealed as it is, but does not decode
    caplog.set_level("WARNING", logger="fewshot_eval")
    inner = _Lengths()
    with ScoreCache(path) as store:
        again = CachedPredictor(inner, store, "ns")
        again.begin("t", ["a"], 0)
        assert again.loglikelihood(reqs) == expected
        assert inner.scored == 3 and again.reused == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0] and "dropped, scored again" in warnings[0], warnings
    with ScoreCache(path) as store:  # the damaged rows were replaced by good ones
        assert store.get_many(keys) and len(store.get_many(keys)) == len(set(keys))


def test_results_round_trip_exactly() -> None:
    values = [Loglik([-0.1, float("-inf"), 1e-300], [1, 2], True), ("text", 3.0), {"a": [1.5]}, None]
    assert from_json(json.loads(json.dumps(to_json(values)))) == values


@pytest.mark.slow
def test_a_job_killed_mid_trial_rescores_only_what_was_not_cached(workdir: Path, tmp_path: Path) -> None:
    args = ["-m", "model=tiny_gpt2", "task=copa_demo", "nshot=2", "num_trials=1", "batch_size=1", "n_eval_samples=16"]
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    run_cli(args + ["keep_score_cache=true"], ref_dir)  # uninterrupted, cache kept: every request it scored
    [ref] = [p.parent for p in (ref_dir / "results").rglob("results.json")]
    total = _rows(ref / "score_cache" / "trial0.sqlite")

    # SIGKILL at a known place: right after the 5th batch committed to the score cache (fewshot_eval/faults.py)
    proc = subprocess.run([sys.executable, "-m", "fewshot_eval", *args], cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, FAULT_ENV: "kill-after-commit:5"}, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    [cache] = (workdir / "results").rglob("score_cache/trial0.sqlite")
    rdir = cache.parent.parent
    assert not (rdir / "trial0" / "metrics.json").exists(), "the job finished before it was killed"
    kept = _rows(cache)
    assert 5 <= kept < total  # 5 commits of one or more requests each, not all of them

    run_cli(args, workdir)
    info = json.loads((rdir / "trial0" / "metrics.json").read_text())["info"]
    assert info["score_cache"] == {"reused": kept, "scored": total - kept}  # nothing committed is rescored
    assert _same(_trial_files(rdir), _trial_files(ref))  # equal to the uninterrupted run (floats within 1e-5)
    ref_results = json.loads((ref / "results.json").read_text())["results"]
    assert json.loads((rdir / "results.json").read_text())["results"] == ref_results
    assert not (rdir / "score_cache").exists() and (ref / "score_cache").exists()  # removed on completion unless kept

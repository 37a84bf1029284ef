"""Demonstration sampling: reproducible, capped, balanced, and truncated to fit max_length."""

from __future__ import annotations

import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.tasks.demonstrations import demo_pool, fit_demonstrations, join_prompt, sample_demonstrations

POOL = [{"_id": str(i), "_label": "ab"[i % 2] if i < 9 else "c"} for i in range(12)]


def ids(sample):
    return [d["_id"] for d in sample.docs]


def test_sampling_is_seeded_and_pinned():
    a = sample_demonstrations(POOL, 4, seed=3)
    assert ids(a) == ids(sample_demonstrations(POOL, 4, seed=3))
    assert ids(a) != ids(sample_demonstrations(POOL, 4, seed=4))
    # random.Random(seed).sample is the same on every machine / Python >= 3.2: pin it.
    assert ids(sample_demonstrations(POOL, 3, seed=0)) == ["6", "11", "0"]
    assert len(set(ids(a))) == 4  # without replacement


def test_nshot_zero_all_and_cap():
    assert sample_demonstrations(POOL, 0, seed=1).docs == []
    everything = sample_demonstrations(POOL, -1, seed=1)
    assert sorted(ids(everything), key=int) == [d["_id"] for d in POOL] and ids(everything) != [d["_id"] for d in POOL]
    capped = sample_demonstrations(POOL, 50, seed=1, task="t")
    assert len(capped.docs) == 12 and "nshot=50 > 12" in capped.warnings[0]
    with pytest.raises(ConfigError, match="nshot must be >= -1"):
        sample_demonstrations(POOL, -2, seed=1)


def test_balanced():
    s = sample_demonstrations(POOL, 6, seed=2, balanced=True, labels=["a", "b", "c"])
    assert sorted(d["_label"] for d in s.docs) == ["a", "a", "b", "b", "c", "c"]
    with pytest.raises(ConfigError, match=r"nshot=4 is not divisible by the 3 classes \['a', 'b', 'c'\]"):
        sample_demonstrations(POOL, 4, seed=2, balanced=True, labels=["a", "b", "c"], task="t")
    with pytest.raises(ConfigError, match=r"class 'c' has 3 demonstration rows, 4 needed"):
        sample_demonstrations(POOL, 12, seed=2, balanced=True, labels=["a", "b", "c"])


def test_pool_fallback_excludes_evaluated_rows():
    assert demo_pool(POOL, None, POOL[:3]) is POOL
    assert [d["_id"] for d in demo_pool(None, POOL, POOL[:10])] == ["10", "11"]


def test_fit_keeps_first_demonstrations_that_fit():
    demos = ["d" * 10] * 5
    cont = "x" * 7

    def build(k):
        return [join_prompt(demos[:k], "prompt", "||", "desc") + cont]

    n = len  # one token per character

    def total(k):  # desc||d*10||...||prompt + cont, in characters
        return 4 + 12 * k + 2 + 6 + 7

    assert len(build(3)[0]) == total(3)
    assert fit_demonstrations(demos, build, n, max_length=None) == 5
    # the model sees max_length tokens: every continuation token but the last is input
    assert fit_demonstrations(demos, build, n, max_length=total(5) - 1) == 5
    assert fit_demonstrations(demos, build, n, max_length=total(3) - 1) == 3
    assert fit_demonstrations(demos, build, n, max_length=total(3) - 2) == 2
    assert fit_demonstrations(demos, build, n, max_length=5) == 0  # the test prompt is never cut

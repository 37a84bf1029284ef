"""clm's memory is bounded by the batch (issue 25): key/value caches alive at once do not grow with the
number of documents; a CUDA out-of-memory error is retried once at half the batch, then fails in one line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fewshot_eval.evaluate.backends.predictor import GenerationRequest, Request

WORDS = "the a cat dog ran sat on mat house tree blue red because so then went came big small old new".split()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def arc_like(n: int, regime: str = "per-ex", choices: int = 4, nshot: int = 3, cont: int = 3, seed: int = 0) -> list[Request]:
    """ARC-shaped requests: every prompt starts with ``Question:`` (a shared, uncached first node),
    demonstrations drawn per example from a pool (``per-ex``) or once (``shared``)."""
    rng = random.Random(seed)
    pool = [f"Question: {words(rng, 25)}\nAnswer: {words(rng, 3)}\n\n" for _ in range(40)]
    shared = rng.sample(pool, nshot)
    reqs = []
    for _ in range(n):
        demos = shared if regime == "shared" else rng.sample(pool, nshot)
        ctx = "".join(demos) + f"Question: {words(rng, 25)}\nAnswer:"
        reqs += [Request(ctx, " " + words(rng, rng.randint(1, 2 * cont))) for _ in range(choices)]
    return reqs


@pytest.fixture(scope="module")
def lm():
    pytest.importorskip("torch")
    import torch

    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    torch.set_num_threads(2)
    return CausalLMPredictor.from_settings({"name": "tiny", "weights": str(tiny_gpt2_path())}, {"device": "cpu", "batch_size": 4})


def peak(lm, reqs: list[Request]):
    lm.loglikelihood(reqs)
    assert lm._tree is True  # the prefix-tree path ran
    return lm.tree_stats


def test_caches_alive_do_not_grow_with_the_number_of_documents(lm):
    """Per-example 4-choice documents: the peak of cache tokens alive is the same for 10 and 80
    documents, within the documented bound (batch_size + h) x L. Before issue 25 every prompt's
    cache stayed alive until all prompts had run: 8x more at 80 documents."""
    small, large = peak(lm, arc_like(10)), peak(lm, arc_like(80))
    assert small.peak_caches >= 2  # caches are used at all (per-example contexts)
    for s in (small, large):
        assert 0 < s.peak_cache_tokens <= s.bound_tokens == (lm.batch_size + s.depth) * s.longest
    assert large.peak_cache_tokens <= 1.3 * small.peak_cache_tokens


@pytest.mark.parametrize("shape", ["shared", "0-shot", "many-choices", "long-continuations"])
def test_the_bound_holds_on_every_shape(lm, shape):
    """Shared demonstrations, 0-shot, 20 choices, long continuations: within the bound, flat in documents;
    a forward call within its padded tokens, batch_size x max(L, PACK)."""
    from fewshot_eval.evaluate.backends.clm.prefix_tree import PACK

    opts = {"shared": {"regime": "shared"}, "0-shot": {"nshot": 0}, "many-choices": {"choices": 20, "nshot": 1},
            "long-continuations": {"choices": 2, "cont": 30}}[shape]
    stats = [peak(lm, arc_like(n, seed=1, **opts)) for n in (12, 48)]
    for s in stats:
        assert s.peak_cache_tokens <= s.bound_tokens
        assert 0 < s.peak_batch_tokens <= s.batch_tokens == lm.batch_size * max(s.longest, PACK)
    assert stats[1].peak_cache_tokens <= 1.3 * stats[0].peak_cache_tokens


def test_rolling_windows_stay_within_the_bound(lm):
    rng = random.Random(4)
    texts = [words(rng, rng.randint(40, 400)) for _ in range(12)]
    old, lm.max_length = lm.max_length, 64
    try:
        lm.loglikelihood_rolling(texts)
    finally:
        lm.max_length = old
    assert lm.tree_stats.peak_cache_tokens <= lm.tree_stats.bound_tokens


def test_a_call_leaves_no_garbage_in_reference_cycles(lm):
    """The prefix tree (every request's tokens) is freed when the call returns, not at the next full
    garbage collection: rolling perplexity scores a tree per two batches, and those trees piled up."""
    import gc

    reqs = arc_like(4, seed=5)
    gc.collect()
    gc.disable()
    try:
        lm.loglikelihood(reqs)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not left & {"PrefixTree", "Node", "Row", "function"}, left


# ---------------------------------------------------------------------- out of memory
class OutOfMemoryOnce:
    """A forward pre-hook that raises CUDA's out-of-memory error on the model's ``at``-th forward
    calls (1-based), and records the batch of every call."""

    def __init__(self, model, at: tuple[int, ...]) -> None:
        self.at, self.calls, self.rows = set(at), 0, []
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        import torch

        self.calls += 1
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.rows.append(ids.shape[0])
        if self.calls in self.at:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def fresh(lm, batch_size: int = 4):
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    pred = CausalLMPredictor(lm.model, lm.tokenizer, device="cpu", batch_size=batch_size, name="tiny")
    pred._tree = lm._tree
    return pred


def test_out_of_memory_retries_once_at_half_the_batch(lm):
    """The third forward call runs out of memory: the batches already finished are kept (reported
    once), the rest runs at half the batch, the numbers equal an undisturbed run, a note says so."""
    reqs = arc_like(6, seed=2)
    want = fresh(lm).loglikelihood(reqs)
    pred = fresh(lm)
    reported: list[int] = []
    pred.on_batch = lambda idx, res: reported.extend(idx)
    with OutOfMemoryOnce(pred.model, at=(3,)) as hook:
        got = pred.loglikelihood(reqs)
    assert [x for g in got for x in g.logprobs] == pytest.approx([x for w in want for x in w.logprobs], abs=1e-5)
    assert pred.batch_size == 2 and max(hook.rows[3:]) <= 2 and max(hook.rows[:3]) == 4
    assert sorted(reported) == list(range(len(reqs)))  # each request reported exactly once
    [note] = pred.describe()["predictor_notes"]
    assert "out of memory in loglikelihood at batch_size=4: retried at batch_size=2" in note


def test_a_second_out_of_memory_fails_in_one_line_naming_batch_size(lm):
    import torch

    pred = fresh(lm, batch_size=8)
    with OutOfMemoryOnce(pred.model, at=(1, 2)), pytest.raises(torch.OutOfMemoryError) as err:
        pred.loglikelihood(arc_like(3))
    msg = str(err.value)
    assert "\n" not in msg and "batch_size=4 (after a retry at half of batch_size=8)" in msg
    assert "model.eval.batch_size=2" in msg and "cache budget" in msg
    assert isinstance(err.value.__cause__, torch.OutOfMemoryError)

    one = fresh(lm, batch_size=1)  # nothing left to halve: fails at once
    with OutOfMemoryOnce(one.model, at=(1,)), pytest.raises(torch.OutOfMemoryError, match="batch_size=1; .*set a smaller max_length"):
        one.loglikelihood(arc_like(1))


def test_generation_retries_at_half_the_batch_with_the_same_outputs(lm):
    rng = random.Random(3)
    reqs = [GenerationRequest("Question: " + words(rng, 12) + "\nAnswer:", ("\n",), 6) for _ in range(6)]
    want = fresh(lm).generate_until(reqs)
    pred = fresh(lm)
    with OutOfMemoryOnce(pred.model, at=(4,)):
        got = pred.generate_until(reqs)
    assert got == want and pred.batch_size == 2
    assert "generate_until at batch_size=4" in pred.notes[0]


def test_the_trial_records_the_retry(lm):
    """Through the evaluator: the trial's info has the note in predictor_notes and warnings."""
    from fewshot_eval.evaluate.evaluator import FewShotEvaluator

    pred = fresh(lm)
    params = {"seed": 0, "scoring": "sum", "batch_size": 4, "n_eval_samples": 6, "train_sep": "\n\n"}
    ev = FewShotEvaluator({"name": "tiny", "predictor": "clm"}, params, predictor=pred)
    with OutOfMemoryOnce(pred.model, at=(2,)):
        res = ev.run_trial(["copa_demo"], params, 2, 0)
    assert any("retried at batch_size=2" in n for n in res.info["predictor_notes"])
    assert any("retried at batch_size=2" in w for w in res.info["warnings"])


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_free_heap_pages_go_back_to_the_system_past_the_threshold() -> None:
    """glibc keeps the pages of freed chunks between live ones (what batches of other sizes leave): past
    FREE_BYTES of free heap, release_freed_memory hands them back on a CPU device, and leaves them on CUDA."""
    import ctypes

    from fewshot_eval.evaluate.backends.clm import freed_memory

    libc = freed_memory._libc()
    if libc is None:
        pytest.skip("not glibc")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunk = 100 << 10  # below glibc's mmap threshold: from the heap
    blocks = [libc.malloc(chunk) for _ in range(2 * (160 << 20) // chunk)]
    for b in blocks:
        ctypes.memset(b, 1, chunk)  # touched: resident
    try:
        for b in blocks[::2]:  # 160 MB of holes between live chunks: not at the heap's top, so not trimmed by free()
            libc.free(b)
        assert libc.mallinfo2().fordblks > freed_memory.FREE_BYTES
        before = _rss_mb()
        freed_memory.release_freed_memory("cuda:0")
        assert _rss_mb() > before - 20  # a GPU's caches are not in this heap: nothing done
        freed_memory.release_freed_memory("cpu")
        assert _rss_mb() < before - 100, (before, _rss_mb())
    finally:
        for b in blocks[1::2]:
            libc.free(b)

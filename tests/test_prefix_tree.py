"""Prefix-tree scoring (clm): every common prefix once, results equal lm-evaluation-harness's."""

from __future__ import annotations

import random

import pytest

from fewshot_eval.evaluate.backends.clm.prefix_tree import PrefixTree, common_prefix
from fewshot_eval.evaluate.backends.predictor import Request

WORDS = "the a cat dog ran sat on mat house tree blue red because so then went came big small old new".split()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def mixed_requests(seed: int = 0) -> list[Request]:
    """Shared demonstrations, per-example contexts, candidates sharing first words, duplicates, an empty context."""
    rng = random.Random(seed)
    demos = words(rng, 60) + "\n\n"
    reqs = []
    for e in range(7):
        ctx = (demos if e % 2 else words(rng, 25) + "\n\n") + words(rng, rng.randint(2, 30)) + "\nAnswer:"
        cands = [" " + words(rng, rng.randint(1, 6)) for _ in range(rng.randint(1, 5))]
        cands += [cands[0] + " " + words(rng, 2)]  # one candidate extends another
        reqs += [Request(ctx, c) for c in cands]
    reqs += [Request("Answer:", " the cat"), Request("", "the cat"), reqs[0]]
    return reqs


@pytest.fixture(scope="module")
def tiny_path():
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    return tiny_gpt2_path()


@pytest.fixture(scope="module")
def lm(tiny_path):
    import torch

    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    torch.set_num_threads(2)
    return CausalLMPredictor.from_settings({"name": "tiny", "weights": str(tiny_path)}, {"device": "cpu", "batch_size": 3})


def test_tree_counts_each_distinct_prefix_once():
    rng = random.Random(3)
    for _ in range(50):
        base = [rng.randrange(5) for _ in range(rng.randint(0, 12))]
        inputs = [base[: rng.randint(0, len(base))] + [rng.randrange(4) for _ in range(rng.randint(1, 8))] for _ in range(rng.randint(1, 12))]
        tree = PrefixTree([(x, x[-1:]) for x in inputs])
        # independent count: the distinct non-empty prefixes of the inputs = the tokens a perfect tree computes
        assert tree.n_tokens == len({tuple(x[:k]) for x in inputs for k in range(1, len(x) + 1)})
        for split, short, pack, unit in ((1, 1, 1, 1), (5, 2, 3, 6), (64, 32, 64, 0), (10**6, 1, 10**6, 10**6)):
            rows = tree.rows(split, short, pack, unit)
            if unit == 10**6:  # whole subtrees of the root, nothing recomputed: every token in exactly one row
                assert sum(r.width for r in rows) == tree.n_tokens
            assert sum(r.width for r in rows) >= tree.n_tokens  # short shared segments may be recomputed
            needs = sorted((i, j + t) for r in rows for _, i, j, k in r.needs for t in range(k))
            assert needs == [(i, 0) for i in range(len(inputs))]  # each read exactly once
        a, b = rng.sample(inputs, 2) if len(inputs) > 1 else (inputs[0], inputs[0])
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        assert common_prefix(a, b) == k


@pytest.mark.slow
def test_equals_lm_eval_loglikelihood(lm, tiny_path):
    """Summed log-likelihoods and greedy flags equal lm-eval 0.4's HFLM on the same requests (fp32)."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    reqs = mixed_requests()
    theirs = HFLM(pretrained=str(tiny_path), device="cpu", batch_size=4, dtype="float32")
    ref = theirs.loglikelihood([Instance("loglikelihood", {}, (r.context, r.continuation), i) for i, r in enumerate(reqs)], disable_tqdm=True)
    got = lm.loglikelihood(reqs)
    assert lm._tree is True  # the prefix-tree path ran
    # 1e-5, or float32 rounding (1e-6 relative) for sums as large as -170
    assert [g.total for g in got] == pytest.approx([ll for ll, _ in ref], rel=1e-6, abs=1e-5)
    assert [g.greedy for g in got] == [bool(gr) for _, gr in ref]


@pytest.mark.slow
def test_any_budget_and_batch_size_gives_the_same_numbers(lm):
    """Rows cut small (many cached nodes, pasts of several lengths in one call) or large, batches of
    1..5 rows: the same per-token log-probs; no forward call holds more than batch_size rows."""
    seqs = []
    for r in mixed_requests(1)[::2]:
        ctx, cont = lm.encode_pair(r.context, r.continuation)
        full = ctx + cont
        seqs.append((full[:-1], full[-len(cont):]))
    ref = lm._score_tokens_linear(seqs)
    widths = []
    hook = lm.model.register_forward_pre_hook(lambda m, a, kw: widths.append(kw["input_ids"].shape[0]), with_kwargs=True)
    try:
        for bs, opts in ((1, {"split": 40}), (2, {"split": 7, "short": 2, "pack": 3}), (5, {"split": 1, "short": 1, "pack": 1}),
                         (4, {"split": 1, "short": 50, "pack": 1, "unit": 3}), (3, {})):
            lm.batch_size, widths[:] = bs, []
            got = lm._score_tree(seqs, **opts)
            worst = max(abs(a - b) for g, r in zip(got, ref) for a, b in zip(g.logprobs, r.logprobs))
            assert worst < 1e-5, (bs, opts)
            assert [g.greedy for g in got] == [r.greedy for r in ref]
            assert max(widths) <= bs
    finally:
        hook.remove()
        lm.batch_size = 3


def test_truncation_like_lm_eval(lm):
    """Requests longer than max_length are cut from the left (lm-eval's window) before the tree."""
    import torch

    rng = random.Random(5)
    ctx = words(rng, 80)
    reqs = [Request(ctx, " " + words(rng, k)) for k in (1, 3, 5)]
    lm.max_length = 40
    try:
        got = lm.loglikelihood(reqs)
    finally:
        lm.max_length = 1024
    for r, g in zip(reqs, got):
        c, t = lm.encode_pair(r.context, r.continuation)
        full = (c + t)[-41:]
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(torch.tensor([full[:-1]])).logits[0], -1)
        want = [logp[len(full) - 1 - len(t) + j, x].item() for j, x in enumerate(t)]
        assert g.logprobs == pytest.approx(want, abs=1e-5)


def _tiny(config_cls, tok, **kw):
    import torch

    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    cfg = config_cls(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, **kw)
    return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "llama-eager", "mistral-sliding"])
def test_other_architectures(lm, arch):
    """Rotary positions with grouped-query attention (llama, also the eager attention's float mask) take
    the tree; a sliding-window cache (mistral) falls back to plain batches. Both equal a direct forward."""
    import torch
    from transformers import LlamaConfig, MistralConfig

    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    if arch.startswith("llama"):
        model = _tiny(LlamaConfig, lm.tokenizer)
        if arch == "llama-eager":
            model.config._attn_implementation = "eager"
    else:
        model = _tiny(MistralConfig, lm.tokenizer, sliding_window=16)
    pred = CausalLMPredictor(model, lm.tokenizer, batch_size=3, max_length=512)
    reqs = mixed_requests(2)
    got = pred.loglikelihood(reqs)
    assert pred._tree is (arch != "mistral-sliding")
    for r, g in zip(reqs, got):
        c, t = pred.encode_pair(r.context, r.continuation)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([c + t])).logits[0, :-1], -1)
        want = [logp[len(c) - 1 + j, x].item() for j, x in enumerate(t)]
        assert g.logprobs == pytest.approx(want, abs=1e-5), r

"""Scoring modes and the clm predictor against a direct forward pass of the tiny GPT-2."""

from __future__ import annotations

import math
import random

import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.predictor import Request, split_whitespace
from fewshot_eval.evaluate.scoring import argmax, score_candidates, shared_prefix_suffix


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    import torch

    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor
    from fewshot_eval.evaluate.backends.tiny_model import build_tiny_gpt2

    path = build_tiny_gpt2(tmp_path_factory.mktemp("cache") / "tiny")
    torch.set_num_threads(2)
    return CausalLMPredictor.from_settings({"name": "tiny", "weights": str(path)}, {"device": "cpu", "batch_size": 4})


def direct(lm, context, continuation):
    """Per-token log-probs from one plain forward pass of context + continuation."""
    import torch

    ctx, cont = lm.encode_pair(context, continuation)
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(torch.tensor([ctx + cont])).logits[0].float(), -1)
    return [logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)]


def test_pure_scoring_arithmetic():
    item = {
        "n_shared_prefix": 1,
        "n_shared_suffix": 2,
        "candidates": [
            {"logprobs": [-1.0, -2.0, -3.0, -4.0], "uncond_logprobs": [-5.0], "text": " Yes"},
            {"logprobs": [-1.0, -0.5, -6.0, -1.0], "uncond_logprobs": [-1.0], "text": " Maybe"},
        ],
    }
    assert score_candidates(item, "sum") == [-10.0, -8.5]
    assert score_candidates(item, "mean") == [-3.0, pytest.approx(-7.5 / 3)]
    assert score_candidates(item, "suffix") == [-7.0, -7.0]
    assert score_candidates(item, "unconditional-norm") == [-5.0, -7.5]
    # lm-eval's acc_norm: loglikelihood / len(choice), the delimiter space not counted
    assert score_candidates(item, "char-norm") == [pytest.approx(-10.0 / 3), pytest.approx(-8.5 / 5)]
    with pytest.raises(ConfigError, match="scoring=suffix.*share no text after the candidate"):
        score_candidates({**item, "n_shared_suffix": 0}, "suffix")
    assert shared_prefix_suffix([[1, 2, 3, 9], [1, 5, 9], [1, 2, 9]]) == (1, 1)
    assert shared_prefix_suffix([[7, 1], [7, 1, 1]]) == (2, 0)  # prefix and suffix never overlap
    assert argmax([1.0, 3.0, 3.0]) == 1


def test_lm_eval_tokenisation_conventions(lm):
    assert split_whitespace("Answer: ", "Yes") == ("Answer:", " Yes")
    assert lm.encode_pair("Answer: ", "Yes") == lm.encode_pair("Answer:", " Yes")
    ctx, cont = lm.encode_pair("He went to", " the store")
    assert lm.tokenizer.convert_ids_to_tokens(cont)[0] == "Ġthe"  # merged with its space: the split matters
    whole = lm.tok_encode("He went to the store")
    assert ctx + cont == whole
    # empty context: BOS/EOS conditions the continuation
    ctx, cont = lm.encode_pair("", "Yes")
    assert ctx == [lm.tokenizer.eos_token_id] and cont == lm.tok_encode("Yes")


def test_loglikelihood_matches_direct_forward_any_batching(lm):
    demos = "The sky is blue because of the light.\n\nThe man ran so he was tired.\n\n"
    reqs = [Request(demos + p, c) for p in ("The dog barked because ", "The cat slept so ") for c in ("it was late.", "a man came in.", "x")]
    reqs += [Request("Answer:", " it was late."), Request("Q", "A")]
    got = lm.loglikelihood(reqs)
    for r, g in zip(reqs, got):
        d = direct(lm, r.context, r.continuation)
        assert len(g.logprobs) == len(d) and max(abs(a - b) for a, b in zip(g.logprobs, d)) < 1e-5
    shuffled = reqs[:]
    random.Random(0).shuffle(shuffled)
    lm.batch_size = 1
    try:
        again = {(r.context, r.continuation): x.total for r, x in zip(shuffled, lm.loglikelihood(shuffled))}
    finally:
        lm.batch_size = 4
    for r, g in zip(reqs, got):
        assert again[(r.context, r.continuation)] == pytest.approx(g.total, abs=1e-5)


def test_left_truncation_like_lm_eval(lm):
    long_ctx = "word " * 60
    lm.max_length = 32
    try:
        (res,) = lm.loglikelihood([Request(long_ctx, "the end")])
    finally:
        lm.max_length = 1024
    import torch

    ctx, cont = lm.encode_pair(long_ctx, "the end")
    full = (ctx + cont)[-33:]
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(torch.tensor([full[:-1]])).logits[0], -1)
    expect = [logp[len(full) - 1 - len(cont) + j, t].item() for j, t in enumerate(cont)]
    assert res.logprobs == pytest.approx(expect, abs=1e-5)


def test_modes_on_a_mid_prompt_template(lm):
    """Evaluator rows, scored in every mode, equal sums/means over a direct forward pass."""
    from fewshot_eval.evaluate.evaluator import FewShotEvaluator

    ev = FewShotEvaluator({"name": "tiny"}, {}, predictor=lm)
    params = {"seed": 0, "scoring": "unconditional-norm", "n_eval_samples": 2, "templates": {"nli_demo": "default"}}
    res = ev.run_trial(["nli_demo"], params, 1, 0)
    row = res.predictions["nli_demo.default"][0]
    p, s = row["n_shared_prefix"], row["n_shared_suffix"]
    assert p == 0 and s > 5  # " Yes, <hypothesis>" / " Maybe, ..." share ", <hypothesis>"
    for c in row["candidates"]:
        d = direct(lm, row["prompt"], c["text"])
        u = direct(lm, "Answer:", c["text"])
        assert c["n_tokens"] == len(d) and c["logprobs"] == pytest.approx(d, abs=1e-5)
        assert c["score"] == pytest.approx(sum(d) - sum(u), abs=1e-5)
        one = {"n_shared_prefix": p, "n_shared_suffix": s, "candidates": [c]}
        assert score_candidates(one, "mean")[0] == pytest.approx(sum(d[p:]) / len(d[p:]), abs=1e-5)
        assert score_candidates(one, "suffix")[0] == pytest.approx(sum(d[-s:]), abs=1e-5)
        assert score_candidates(one, "unconditional-norm")[0] == pytest.approx(sum(d) - sum(u), abs=1e-5)
        assert score_candidates(one, "char-norm")[0] == pytest.approx(sum(d) / len(c["text"].lstrip()), abs=1e-5)
    for mode in ("sum", "mean", "suffix", "char-norm"):
        r2 = ev.run_trial(["nli_demo"], {**params, "scoring": mode}, 1, 0).predictions["nli_demo.default"][0]
        assert [c["score"] for c in r2["candidates"]] == pytest.approx(score_candidates(row, mode), abs=1e-6)
        assert all(c["uncond_logprobs"] is None for c in r2["candidates"])  # only unconditional-norm computes them
        with pytest.raises(ConfigError, match="Re-run the evaluation with scoring=unconditional-norm"):
            score_candidates(r2, "unconditional-norm")
    assert not math.isnan(res.metrics["nli_demo.default"]["accuracy"])


def test_unconditional_continuations_only_when_needed_and_once_per_job(lm):
    """scoring=sum asks the model for no unconditional continuation; unconditional-norm asks for each
    distinct candidate text once per job (evaluator), across examples and trials."""
    from fewshot_eval.evaluate.evaluator import FewShotEvaluator

    seen: list[Request] = []

    class Counting(type(lm)):
        def loglikelihood(self, requests):
            seen.extend(requests)
            return super().loglikelihood(requests)

    counting = Counting(lm.model, lm.tokenizer, batch_size=4)
    params = {"seed": 0, "scoring": "sum", "n_eval_samples": 4}
    ev = FewShotEvaluator({"name": "tiny"}, {}, predictor=counting)
    ev.run_trial(["copa_demo"], params, 1, 0)
    assert seen and not [r for r in seen if r.context == "Answer:"]
    seen.clear()
    params = {**params, "scoring": "unconditional-norm"}
    rows = [r for t in (0, 1) for r in ev.run_trial(["copa_demo"], params, 1, t).predictions["copa_demo.default"]]
    uncond = [r.continuation for r in seen if r.context == "Answer:"]
    texts = {c["text"] for r in rows for c in r["candidates"]}
    assert sorted(uncond) == sorted(texts)  # each distinct text once, though two trials score the same examples
    for r in rows:
        for c in r["candidates"]:
            assert c["uncond_logprobs"] == pytest.approx(direct(lm, "Answer:", c["text"]), abs=1e-4)

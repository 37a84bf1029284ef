"""fewshot-eval's rolling perplexity vs lm-evaluation-harness's HFLM ``loglikelihood_rolling``.

Same tiny GPT-2 (``weights: tiny-gpt2``, loaded from its cache path by both), documents
generated fresh from a seed (word salad of varying length, some far longer than the context
window, so several windows are scored). Prints the max abs difference of the per-document
log-likelihoods, the three metrics (word/byte perplexity, bits per byte) from each side's
numbers, and the times (best of ``--repeats`` interleaved runs) with their ratio::

    HF_HUB_OFFLINE=1 python benchmarks/bench_perplexity_vs_lm_eval.py
    HF_HUB_OFFLINE=1 python benchmarks/bench_perplexity_vs_lm_eval.py --max-length 128 --docs 60

Both sides count words and bytes, and aggregate, with lm-eval's own functions
(``PerplexityTask.count_words``/``count_bytes``, ``weighted_perplexity``, ``bits_per_byte``).
"""

from __future__ import annotations

import argparse
import os
import random

from _vs_lm_eval import add_common_args, bench_gpt2, interleaved, tiny_predictors  # benchmarks/_vs_lm_eval.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ("the of and to in a is was for on that with as by at from his her it an were are which this be "
         "river market winter stone bridge town north harbour school library lantern railway orchard "
         "copper hills festival farmers bread bakers station century built opened closed museum").split()


def fresh_documents(n: int, seed: int) -> list[str]:
    """``n`` documents of 5 to ~3000 words (sentences, paragraphs), from ``seed``."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        n_words = int(rng.choice([5, 20, 80, 300, 1200, 3000]) * rng.uniform(0.5, 1.0))
        sents, left = [], n_words
        while left > 0:
            k = min(left, rng.randint(4, 18))
            s = " ".join(rng.choice(WORDS) for _ in range(k))
            sents.append(s[:1].upper() + s[1:] + rng.choice([".", ".", "?", ", 1907."]))
            left -= k
        paras = [" ".join(sents[i : i + 5]) for i in range(0, len(sents), 5)]
        docs.append("\n\n".join(paras))
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=40)
    add_common_args(ap, seed=2026, max_length=None, repeats=3, max_length_help="context window (default: the model's, 1024)")
    args = ap.parse_args()

    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity

    from fewshot_eval.evaluate.tasks.perplexity_task import count_words_bytes

    path, ours, theirs = tiny_predictors(args.batch_size, args.max_length, args.threads, args.hf_overrides, bench_gpt2(args.width, args.layers))
    assert ours.max_length == theirs.max_length, (ours.max_length, theirs.max_length)

    docs = fresh_documents(args.docs, args.seed)
    n_tokens = [len(ours.tokenizer.encode(d, add_special_tokens=False)) for d in docs]
    windows = sum(-(-n // ours.max_length) for n in n_tokens)
    inst = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(d,), idx=i) for i, d in enumerate(docs)]
    ours.loglikelihood_rolling(docs[:2]), theirs.loglikelihood_rolling(inst[:2], disable_tqdm=True)  # warm-up
    t_theirs, t_ours, ll_theirs, res = interleaved(lambda: theirs.loglikelihood_rolling(inst, disable_tqdm=True),
                                                   lambda: ours.loglikelihood_rolling(docs), args.repeats)
    ll_ours = [r.total for r in res]

    counts = [count_words_bytes(d) for d in docs]
    print(f"model {path}  max_length={ours.max_length}  batch_size={args.batch_size}  threads={args.threads}  repeats={args.repeats}"
          + (f"  fewshot-eval hf_overrides={args.hf_overrides}" if args.hf_overrides else ""))
    print(f"documents: {len(docs)} (seed {args.seed}), tokens {sum(n_tokens)} (min {min(n_tokens)}, max {max(n_tokens)}), "
          f"{sum(n > ours.max_length for n in n_tokens)} longer than the context, {windows} windows")
    print(f"max |dLL| per document: {max(abs(a - b) for a, b in zip(ll_ours, ll_theirs)):.3e}   "
          f"(largest |LL| {max(abs(b) for b in ll_theirs):.1f})")
    print(f"{'metric':<16} {'lm-eval':>16} {'fewshot-eval':>16} {'abs diff':>10} {'rel diff':>10}")
    for name, agg, unit in (("word_perplexity", weighted_perplexity, 0), ("byte_perplexity", weighted_perplexity, 1), ("bits_per_byte", bits_per_byte, 1)):
        a = agg([(ll, c[unit]) for ll, c in zip(ll_theirs, counts)])
        b = agg([(ll, c[unit]) for ll, c in zip(ll_ours, counts)])
        print(f"{name:<16} {a:>16.8g} {b:>16.8g} {abs(a - b):>10.2e} {abs(a - b) / abs(a):>10.2e}")
    print(f"time (best of {args.repeats}): lm-eval {t_theirs:.3f}s  fewshot-eval {t_ours:.3f}s  ratio {t_theirs / t_ours:.2f}x")


if __name__ == "__main__":
    main()

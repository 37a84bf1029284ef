"""fewshot-eval's clm ``generate_until`` vs lm-evaluation-harness's ``HFLM.generate_until``: same outputs?

Same tiny GPT-2 (``weights: tiny-gpt2``, loaded from its cache path by both), prompts generated
fresh from ``--seed`` (few-shot "translation" prompts of invented words, 0..4 demonstrations,
so lengths vary), greedy decoding, the same batch size and ``max_length`` for both. Runs are
interleaved (theirs, ours, theirs, ...) and the best of ``--repeats`` is kept. Prints, per
setting, the fraction of outputs identical to lm-eval's and the time of each.

    HF_HUB_OFFLINE=1 python benchmarks/bench_generation_vs_lm_eval.py
    HF_HUB_OFFLINE=1 python benchmarks/bench_generation_vs_lm_eval.py --n 128 --max-gen-toks 64 --threads 2
"""

from __future__ import annotations

import argparse
import os
import random

from _vs_lm_eval import add_common_args, bench_gpt2, interleaved, tiny_predictors  # benchmarks/_vs_lm_eval.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def fresh_prompts(n: int, seed: int) -> list[str]:
    """Few-shot prompts over an invented vocabulary: ``Source: ...\\nTarget: ...`` demonstrations, then a query."""
    rng = random.Random(seed)
    letters = "abdefgiklmnoprstuvz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(300)]
    lexicon = {w: "".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for w in vocab}

    def pair() -> tuple[str, str]:
        src = [rng.choice(vocab) for _ in range(rng.randint(2, 9))]
        return " ".join(src).capitalize() + ".", " ".join(lexicon[w] for w in src).capitalize() + "."

    out = []
    for _ in range(n):
        demos = [pair() for _ in range(rng.randint(0, 4))]
        query, _ = pair()
        out.append("".join(f"Source: {s}\nTarget: {t}\n\n" for s, t in demos) + f"Source: {query}\nTarget:")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64, help="prompts per setting")
    ap.add_argument("--max-gen-toks", type=int, default=32)
    add_common_args(ap, seed=1234, max_length=512, repeats=3)
    args = ap.parse_args()

    from lm_eval.api.instance import Instance

    from fewshot_eval.evaluate.backends.predictor import GenerationRequest

    path, ours, theirs = tiny_predictors(args.batch_size, args.max_length, args.threads, args.hf_overrides, bench_gpt2(args.width, args.layers))
    print(f"model {path}  n={args.n}  batch_size={args.batch_size}  max_length={args.max_length}  "
          f"max_gen_toks={args.max_gen_toks}  threads={args.threads}  repeats={args.repeats} (interleaved, best of)")
    print(f"{'until':<14} {'prompts':>7} {'identical':>9} {'lm-eval s':>10} {'ours s':>8} {'ratio':>7}")
    settings = [("\\n\\n (train_sep)", ("\n\n",)), ("\\n", ("\n",)), ("'a', 'e'", ("a", "e"))]
    for i, (name, until) in enumerate(settings):
        reqs = [GenerationRequest(p, until, args.max_gen_toks) for p in fresh_prompts(args.n, args.seed + i)]
        inst = [Instance("generate_until", None, (r.context, r.gen_kwargs()), j) for j, r in enumerate(reqs)]
        ours.generate_until(reqs[:2]), theirs.generate_until(inst[:2], disable_tqdm=True)  # warm-up
        t_theirs, t_ours, b, a = interleaved(lambda: theirs.generate_until(inst, disable_tqdm=True), lambda: ours.generate_until(reqs), args.repeats)
        same = sum(x == y for x, y in zip(a, b)) / len(a)
        print(f"{name:<14} {len(reqs):>7} {same:>9.3f} {t_theirs:>10.3f} {t_ours:>8.3f} {t_theirs / t_ours:>6.2f}x")
    print("identical: fraction of outputs equal to lm-eval's, character for character; ratio: lm-eval time / ours.")


if __name__ == "__main__":
    main()

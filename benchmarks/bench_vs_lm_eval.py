"""fewshot-eval's clm scoring vs lm-evaluation-harness's HFLM ``loglikelihood``: same numbers, how much faster.

Data is generated fresh (random word sequences from a seeded generator, not the bundled demo
tasks), in several task shapes and two prompt regimes, and the same request list goes to both:

* ``shared``: this project's prompts: one demonstration set per trial, shared by every example;
* ``per-ex``: each example with its own demonstrations, drawn per example as lm-eval does
  (``nshot 0`` rows: a 0-shot task, the same in both regimes).

Per shape and regime: the time of lm-eval's ``HFLM.loglikelihood`` and of ours (best of
``--repeats`` interleaved runs), the ratio, the prefix-sharing bound (tokens lm-eval computes:
each distinct input once / tokens a perfect prefix tree computes), ratio / bound, and the max
abs difference of the summed log-likelihoods. Same tiny GPT-2 (``tiny_gpt2_path()``), fp32, CPU.

    HF_HUB_OFFLINE=1 python benchmarks/bench_vs_lm_eval.py            # lm_eval is a dependency
    HF_HUB_OFFLINE=1 python benchmarks/bench_vs_lm_eval.py --shapes arc4 --examples 80

Targets (issue 12): ratio >= 0.8 x bound on every shape, never below 1.0x; arc4 per-ex >= 2.5x.
TODO(generation, rolling perplexity): those shapes are benchmarked by the helpers adding
``generate_until`` / ``loglikelihood_rolling``; add them to SHAPES with their own ``run`` pair.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# on a shared machine, spinning OpenMP threads waiting for a descheduled peer dominate both timings
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@dataclass(frozen=True)
class Shape:
    name: str
    candidates: int  # per example
    question: int  # tokens of an example's own text (about)
    continuation: int  # tokens per candidate (about)
    nshot: int  # demonstrations per prompt


SHAPES = {
    "copa2": Shape("copa2", 2, 18, 7, 3),  # COPA-like: 2 short choices, short contexts (~100 tokens with 3 demos)
    "copa2-0shot": Shape("copa2-0shot", 2, 18, 7, 0),
    "arc4": Shape("arc4", 4, 40, 9, 5),  # ARC-like: ~330-token contexts (5 demos), ~9-token choices
    "many20": Shape("many20", 20, 30, 3, 2),  # many candidates
    "longcont": Shape("longcont", 2, 30, 60, 2),  # long continuations
}


class Words:
    """Random word sequences from a seeded generator over a seeded lexicon of pseudo-words
    (letters and common English pieces, so words are 1-4 tokens of the tiny GPT-2)."""

    PIECES = ("th", "er", "ing", "ed", "an", "on", "re", "at", "st", "nd", "en", "es", "ou", "a", "e", "i", "o", "u", "s", "t", "m", "k", "p", "l")

    def __init__(self, seed: int, tokenizer) -> None:
        self.rng = random.Random(seed)
        lexicon = {"".join(self.rng.choice(self.PIECES) for _ in range(self.rng.randint(1, 3))) for _ in range(600)}
        self.lexicon = sorted(lexicon)
        self.cost = {w: len(tokenizer.encode(" " + w)) for w in self.lexicon}  # byte-level BPE: words tokenise alone

    def text(self, tokens: int) -> str:
        """About ``tokens`` tokens of words (each word with its leading space)."""
        out, n = [], 0
        while n < tokens:
            w = self.rng.choice(self.lexicon)
            out.append(w)
            n += self.cost[w]
        return " ".join(out)


def make_examples(shape: Shape, n: int, seed: int, tokenizer) -> list[dict]:
    w = Words(seed, tokenizer)
    out = []
    for i in range(n):
        cands = [w.text(w.rng.randint(max(1, shape.continuation * 2 // 3), shape.continuation * 4 // 3)) for _ in range(shape.candidates)]
        out.append({"id": i, "question": w.text(shape.question), "choices": cands, "gold": w.rng.randrange(shape.candidates)})
    return out


def fmt(doc: dict) -> str:
    return f"Question: {doc['question']}\nAnswer:"


def requests(shape: Shape, regime: str, n: int, seed: int, tokenizer) -> list[tuple[str, str]]:
    """(context, continuation) pairs; demonstrations from a separate pool, per trial or per example."""
    docs = make_examples(shape, n, seed, tokenizer)
    pool = make_examples(shape, 64, seed + 1, tokenizer)
    demo = lambda d: f"{fmt(d)} {d['choices'][d['gold']]}"  # noqa: E731
    rng = random.Random(seed + 2)
    shared = rng.sample(pool, shape.nshot)
    out = []
    for d in docs:
        demos = shared if regime == "shared" else rng.sample(pool, shape.nshot)  # lm-eval: a fresh draw per doc
        ctx = "".join(demo(x) + "\n\n" for x in demos) + fmt(d)
        out += [(ctx, " " + c) for c in d["choices"]]
    return out


def bound(ours, reqs: list[tuple[str, str]]) -> tuple[float, float, float]:
    """(mean tokens per context, per continuation, tokens lm-eval computes / tokens a perfect prefix tree computes)."""
    from fewshot_eval.evaluate.prefix_tree import PrefixTree

    seqs, ctx_len, cont_len = [], [], []
    for c, t in reqs:
        ctx, cont = ours.encode_pair(c, t)
        full = (ctx + cont)[-(ours.max_length + 1) :]
        seqs.append((full[:-1], full[-len(cont) :]))
        ctx_len.append(len(ctx))
        cont_len.append(len(cont))
    tree = PrefixTree(seqs)
    return sum(ctx_len) / len(reqs), sum(cont_len) / len(reqs), sum(len(x) for x in tree.inputs) / tree.n_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated: {', '.join(SHAPES)}")
    ap.add_argument("--regimes", default="shared,per-ex")
    ap.add_argument("--examples", type=int, default=32, help="examples per shape")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from fewshot_eval.evaluate.api import Request
    from fewshot_eval.evaluate.clm import CausalLMPredictor
    from fewshot_eval.evaluate.tiny_model import tiny_gpt2_path

    torch.set_num_threads(args.threads)
    path = str(tiny_gpt2_path())
    params = {"device": "cpu", "batch_size": args.batch_size, "max_length": args.max_length}
    ours = CausalLMPredictor.from_settings({"name": "tiny-gpt2", "weights": path}, params)
    theirs = HFLM(pretrained=path, device="cpu", batch_size=args.batch_size, max_length=args.max_length, dtype="float32")
    print(f"model {path}  batch_size={args.batch_size}  threads={args.threads}  best of {args.repeats} interleaved runs  examples={args.examples}")
    head = f"{'shape':<12} {'regime':<7} {'cands':>5} {'ctx tok':>7} {'cont tok':>8} {'reqs':>5} {'lm-eval s':>9} {'ours s':>7} {'ratio':>6} {'bound':>6} {'ratio/bound':>11} {'max|dLL|':>9}"
    print(head)
    print("-" * len(head))
    for si, name in enumerate(args.shapes.split(",")):
        shape = SHAPES[name]
        for regime in args.regimes.split(","):
            if shape.nshot == 0 and regime != args.regimes.split(",")[0]:
                continue  # 0-shot: both regimes are the same requests
            reqs = requests(shape, regime, args.examples, args.seed + 100 * si, ours.tokenizer)
            ctx_tok, cont_tok, limit = bound(ours, reqs)
            mine = [Request(c, t) for c, t in reqs]
            inst = [Instance(request_type="loglikelihood", doc={}, arguments=(c, t), idx=i) for i, (c, t) in enumerate(reqs)]
            ours.loglikelihood(mine[:4]), theirs.loglikelihood(inst[:4], disable_tqdm=True)  # warm-up
            t_theirs = t_ours = float("inf")
            for _ in range(args.repeats):  # interleaved: machine noise hits both alike
                t = time.perf_counter()
                ll_theirs = theirs.loglikelihood(inst, disable_tqdm=True)
                t_theirs = min(t_theirs, time.perf_counter() - t)
                t = time.perf_counter()
                ll_ours = ours.loglikelihood(mine)
                t_ours = min(t_ours, time.perf_counter() - t)
            diff = max(abs(a.total - b[0]) for a, b in zip(ll_ours, ll_theirs))
            ratio = t_theirs / t_ours
            label = regime if shape.nshot else "0-shot"
            print(f"{name:<12} {label:<7} {shape.candidates:>5} {ctx_tok:>7.0f} {cont_tok:>8.1f} {len(reqs):>5} {t_theirs:>9.3f} {t_ours:>7.3f} "
                  f"{ratio:>5.2f}x {limit:>5.2f}x {ratio / limit:>11.2f} {diff:>9.1e}", flush=True)
    print("generation, rolling perplexity: TODO (benchmarked with generate_until / loglikelihood_rolling).")
    print("bound: tokens lm-eval computes (each distinct input once) / tokens of the prefix tree over the requests.")


if __name__ == "__main__":
    main()

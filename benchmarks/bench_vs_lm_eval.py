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

Generation shapes (``GEN_SHAPES``: lm-eval's ``HFLM.generate_until`` vs ours, greedy, stop
``"\\n\\n"``, gen5stop also ``"Fal"``): the same two regimes; agreement = fraction of outputs identical to lm-eval's;
bound = (prompt tokens + generated tokens) / (prompt tokens of a perfect prefix tree + generated
tokens), generated tokens counted per row to its stop (lm-eval's padding steps not counted, so
the bound is low for it). Perplexity shapes (``PPL_SHAPES``: ``HFLM.loglikelihood_rolling``,
documents longer than the window ``max_length``): agreement = max abs difference of the
per-document log-likelihoods; bound = window tokens / prefix-tree tokens of the windows.

Targets (issue 12): ratio >= 0.8 x bound on every shape, never below 1.0x; arc4 per-ex >= 2.5x.
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass

from _vs_lm_eval import add_common_args, bench_gpt2, interleaved, tiny_predictors  # benchmarks/_vs_lm_eval.py

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

@dataclass(frozen=True)
class GenShape:
    name: str
    nshot: int  # demonstrations per prompt
    question: int  # tokens of an example's text (about)
    answer: int  # tokens of a demonstration's answer (about)
    max_gen: int  # max_gen_toks
    until: tuple[str, ...] = ("\n\n",)  # stop strings


GEN_SHAPES = {
    "gen5": GenShape("gen5", 5, 30, 8, 32),  # QA-like, 5 demonstrations (~270-token prompts)
    "gen5-0shot": GenShape("gen5-0shot", 0, 30, 8, 32),
    "gen2long": GenShape("gen2long", 2, 60, 40, 64),  # longer answers, longer generations
    "gen5stop": GenShape("gen5stop", 5, 30, 8, 32, ("\n\n", "Fal")),  # a stop string the tiny model does emit: rows stop at different steps
}


@dataclass(frozen=True)
class PplShape:
    name: str
    window: int  # max_length of both predictors
    tokens: tuple[int, int]  # document length range (tokens, about)


PPL_SHAPES = {
    "ppl256": PplShape("ppl256", 256, (200, 1500)),  # most documents span several windows
    "ppl1024": PplShape("ppl1024", 1024, (800, 3000)),
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
    from fewshot_eval.evaluate.backends.clm.prefix_tree import PrefixTree

    seqs, ctx_len, cont_len = [], [], []
    for c, t in reqs:
        ctx, cont = ours.encode_pair(c, t)
        full = (ctx + cont)[-(ours.max_length + 1) :]
        seqs.append((full[:-1], full[-len(cont) :]))
        ctx_len.append(len(ctx))
        cont_len.append(len(cont))
    tree = PrefixTree(seqs)
    return sum(ctx_len) / len(reqs), sum(cont_len) / len(reqs), sum(len(x) for x in tree.inputs) / tree.n_tokens


def gen_requests(shape: GenShape, regime: str, n: int, seed: int, tokenizer) -> list[str]:
    """Prompts ``Question: ...\\nAnswer:`` after ``shape.nshot`` demonstrations (shared or per example)."""
    w = Words(seed, tokenizer)
    docs = [(w.text(shape.question), w.text(shape.answer)) for _ in range(n)]
    pool = [(w.text(shape.question), w.text(shape.answer)) for _ in range(64)]
    rng = random.Random(seed + 2)
    shared = rng.sample(pool, shape.nshot)
    out = []
    for q, _ in docs:
        demos = shared if regime == "shared" else rng.sample(pool, shape.nshot)
        out.append("".join(f"Question: {dq}\nAnswer: {da}\n\n" for dq, da in demos) + f"Question: {q}\nAnswer:")
    return out


def gen_bound(ours, prompts: list[str], outputs: list[str], max_gen: int) -> tuple[float, float, float]:
    """(mean prompt tokens, mean generated tokens, bound) -- see the module docstring."""
    from fewshot_eval.evaluate.backends.clm.prefix_tree import PrefixTree

    ids = [ours.tok_encode(p)[-(ours.max_length - max_gen) :] for p in prompts]
    gen = [min(max_gen, len(ours.tok_encode(o)) + 1) for o in outputs]
    tree = PrefixTree([(x, x[-1:]) for x in ids])
    plain = sum(len(x) for x in ids) + sum(gen)
    return sum(map(len, ids)) / len(ids), sum(gen) / len(gen), plain / (tree.n_tokens + sum(gen))


def documents(shape: PplShape, n: int, seed: int, tokenizer) -> list[str]:
    """``n`` documents of random words, paragraphs of ~60 tokens, lengths in ``shape.tokens``."""
    w = Words(seed, tokenizer)
    return ["\n\n".join(w.text(60) for _ in range(max(1, w.rng.randint(*shape.tokens) // 60))) for _ in range(n)]


def ppl_bound(ours, docs: list[str]) -> tuple[float, float]:
    """(mean tokens per document, bound): lm-eval's window inputs / their prefix-tree tokens."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    from fewshot_eval.evaluate.backends.clm.prefix_tree import PrefixTree

    seqs, n_tok = [], []
    for d in docs:
        toks = ours.tokenizer.encode(d, add_special_tokens=False)
        n_tok.append(len(toks))
        for ctx, cont in map(make_disjoint_window, get_rolling_token_windows(token_list=toks, prefix_token=ours.prefix_token_id(),
                                                                             max_seq_len=ours.max_length, context_len=1)):
            full = (ctx + cont)[-(ours.max_length + 1) :]
            seqs.append((full[:-1], cont))
    tree = PrefixTree(seqs)
    return sum(n_tok) / len(docs), sum(len(x) for x, _ in seqs) / tree.n_tokens


def regime_labels(nshot: int, regimes: str) -> list[tuple[str, str]]:
    """(regime, label) of each run of a shape: a 0-shot shape runs once (both regimes are the same requests), as ``0-shot``."""
    names = regimes.split(",")
    return [(r, r) for r in names] if nshot else [(names[0], "0-shot")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    every = [*SHAPES, *GEN_SHAPES, *PPL_SHAPES]
    ap.add_argument("--shapes", default=",".join(every), help=f"comma-separated: {', '.join(every)}")
    ap.add_argument("--docs", type=int, default=12, help="documents per perplexity shape")
    ap.add_argument("--regimes", default="shared,per-ex")
    ap.add_argument("--examples", type=int, default=32, help="examples per shape")
    add_common_args(ap, seed=1234, max_length=1024, repeats=5)
    args = ap.parse_args()

    from lm_eval.api.instance import Instance

    from fewshot_eval.evaluate.backends.predictor import Request

    path, ours, theirs = tiny_predictors(args.batch_size, args.max_length, args.threads, args.hf_overrides, bench_gpt2(args.width, args.layers))
    print(f"model {path}  batch_size={args.batch_size}  threads={args.threads}  best of {args.repeats} interleaved runs  examples={args.examples}"
          + (f"  fewshot-eval hf_overrides={args.hf_overrides}" if args.hf_overrides else ""))
    head = (f"{'shape':<12} {'regime':<7} {'cands':>5} {'ctx tok':>7} {'cont tok':>8} {'reqs':>5} {'lm-eval s':>9} {'ours s':>7} {'ratio':>6} "
            f"{'bound':>6} {'ratio/bound':>11} {'max|dLL|':>9}")
    print(head)
    print("-" * len(head))
    names = args.shapes.split(",")
    for bad in set(names) - set(every):
        raise SystemExit(f"unknown shape {bad!r}: choose from {', '.join(every)}")
    for si, name in enumerate(names):
        if name not in SHAPES:
            continue
        shape = SHAPES[name]
        for regime, label in regime_labels(shape.nshot, args.regimes):
            reqs = requests(shape, regime, args.examples, args.seed + 100 * si, ours.tokenizer)
            ctx_tok, cont_tok, limit = bound(ours, reqs)
            mine = [Request(c, t) for c, t in reqs]
            inst = [Instance(request_type="loglikelihood", doc={}, arguments=(c, t), idx=i) for i, (c, t) in enumerate(reqs)]
            ours.loglikelihood(mine[:4]), theirs.loglikelihood(inst[:4], disable_tqdm=True)  # warm-up
            t_theirs, t_ours, ll_theirs, ll_ours = interleaved(lambda: theirs.loglikelihood(inst, disable_tqdm=True),
                                                               lambda: ours.loglikelihood(mine), args.repeats)
            diff = max(abs(a.total - b[0]) for a, b in zip(ll_ours, ll_theirs))
            ratio = t_theirs / t_ours
            print(f"{name:<12} {label:<7} {shape.candidates:>5} {ctx_tok:>7.0f} {cont_tok:>8.1f} {len(reqs):>5} {t_theirs:>9.3f} {t_ours:>7.3f} "
                  f"{ratio:>5.2f}x {limit:>5.2f}x {ratio / limit:>11.2f} {diff:>9.1e}", flush=True)
    from fewshot_eval.evaluate.backends.predictor import GenerationRequest

    gen_names = [x for x in names if x in GEN_SHAPES]
    if gen_names:
        print("\ngeneration (generate_until, greedy): agree = fraction of outputs identical to lm-eval's")
        head = (f"{'shape':<12} {'regime':<7} {'prompt tok':>10} {'gen tok':>7} {'reqs':>5} {'lm-eval s':>9} {'ours s':>7} {'ratio':>6} {'bound':>6} "
                f"{'ratio/bound':>11} {'agree':>6}")
        print(head)
        print("-" * len(head))
    for si, name in enumerate(gen_names):
        shape = GEN_SHAPES[name]
        for regime, label in regime_labels(shape.nshot, args.regimes):
            prompts = gen_requests(shape, regime, args.examples, args.seed + 500 + 100 * si, ours.tokenizer)
            mine = [GenerationRequest(p, shape.until, shape.max_gen) for p in prompts]
            inst = [Instance(request_type="generate_until", doc={}, arguments=(r.context, r.gen_kwargs()), idx=i) for i, r in enumerate(mine)]
            ours.generate_until(mine[:2]), theirs.generate_until(inst[:2], disable_tqdm=True)  # warm-up
            t_theirs, t_ours, a, b = interleaved(lambda: theirs.generate_until(inst, disable_tqdm=True), lambda: ours.generate_until(mine), args.repeats)
            ptok, gtok, limit = gen_bound(ours, prompts, a, shape.max_gen)
            agree = sum(x == y for x, y in zip(a, b)) / len(a)
            ratio = t_theirs / t_ours
            print(f"{name:<12} {label:<7} {ptok:>10.0f} {gtok:>7.1f} {len(mine):>5} {t_theirs:>9.3f} {t_ours:>7.3f} "
                  f"{ratio:>5.2f}x {limit:>5.2f}x {ratio / limit:>11.2f} {agree:>6.3f}", flush=True)
    ppl_names = [x for x in names if x in PPL_SHAPES]
    if ppl_names:
        print("\nrolling perplexity (loglikelihood_rolling, documents longer than the window): max|dLL| per document")
        head = (f"{'shape':<12} {'window':>7} {'doc tok':>7} {'docs':>5} {'lm-eval s':>9} {'ours s':>7} {'ratio':>6} {'bound':>6} {'ratio/bound':>11} "
                f"{'max|dLL|':>9}")
        print(head)
        print("-" * len(head))
    for si, name in enumerate(ppl_names):
        shape = PPL_SHAPES[name]
        _, p_ours, p_theirs = tiny_predictors(args.batch_size, shape.window, hf_overrides=args.hf_overrides, weights=path)
        docs = documents(shape, args.docs, args.seed + 900 + 100 * si, ours.tokenizer)
        inst = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(d,), idx=i) for i, d in enumerate(docs)]
        p_ours.loglikelihood_rolling(docs[:1]), p_theirs.loglikelihood_rolling(inst[:1], disable_tqdm=True)  # warm-up
        t_theirs, t_ours, a, b = interleaved(lambda: p_theirs.loglikelihood_rolling(inst, disable_tqdm=True), lambda: p_ours.loglikelihood_rolling(docs),
                                             args.repeats)
        dtok, limit = ppl_bound(p_ours, docs)
        diff = max(abs(x - y.total) for x, y in zip(a, b))
        ratio = t_theirs / t_ours
        print(f"{name:<12} {shape.window:>7} {dtok:>7.0f} {len(docs):>5} {t_theirs:>9.3f} {t_ours:>7.3f} "
              f"{ratio:>5.2f}x {limit:>5.2f}x {ratio / limit:>11.2f} {diff:>9.1e}", flush=True)
    print("bound: tokens lm-eval computes (each distinct input once) / tokens of the prefix tree over the requests.")


if __name__ == "__main__":
    main()

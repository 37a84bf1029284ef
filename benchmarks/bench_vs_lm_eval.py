"""fewshot-eval's clm scoring vs lm-evaluation-harness's HFLM ``loglikelihood``: same numbers, faster.

Same tiny GPT-2 (``weights: tiny-gpt2``, loaded from its cache path by both), same bundled
data, 5-shot, one trial. The (context, continuation) requests are taken from fewshot-eval's
prediction rows and given unchanged to lm-eval. Prints, per task, the max abs difference of
the summed log-likelihoods and the time of each (best of ``--repeats``).

    bash benchmarks/setup_lm_eval_env.sh          # once: benchmarks/.venv-lm-eval with lm-eval
    HF_HUB_OFFLINE=1 benchmarks/.venv-lm-eval/bin/python benchmarks/bench_vs_lm_eval.py

lm-eval is not a dependency of fewshot-eval; it is only imported here.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="story_demo,copa_demo", help="comma-separated task defs (story_demo: 4 candidates, copa_demo: 2)")
    ap.add_argument("--nshot", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from fewshot_eval.evaluate.api import Request
    from fewshot_eval.evaluate.clm import CausalLMPredictor
    from fewshot_eval.evaluate.runner import FewShotEvaluator
    from fewshot_eval.evaluate.tiny_model import tiny_gpt2_path

    torch.set_num_threads(args.threads)
    path = str(tiny_gpt2_path())
    params = {"seed": 0, "scoring": "sum", "device": "cpu", "batch_size": args.batch_size, "max_length": args.max_length, "train_sep": "\n\n"}
    ours = CausalLMPredictor.from_settings({"name": "tiny-gpt2", "weights": path}, params)
    ev = FewShotEvaluator({"name": "tiny-gpt2"}, params, predictor=ours)
    theirs = HFLM(pretrained=path, device="cpu", batch_size=args.batch_size, max_length=args.max_length, dtype="float32")
    print(f"model {path}  nshot={args.nshot}  batch_size={args.batch_size}  threads={args.threads}  repeats={args.repeats}")
    print(f"{'task':<12} {'cands':>5} {'requests':>8} {'max|dLL|':>10} {'lm-eval s':>10} {'ours s':>8} {'speedup':>8} {'full trial s':>12}")
    for task in args.tasks.split(","):
        t_trial, res = best_time(lambda: ev.run_trial([task], params, args.nshot, 0), 1)
        (rows,) = res.predictions.values()
        reqs = [Request(r["prompt"], c["text"]) for r in rows for c in r["candidates"]]
        stored = [c["score"] for r in rows for c in r["candidates"]]
        inst = [Instance(request_type="loglikelihood", doc={}, arguments=(q.context, q.continuation), idx=i) for i, q in enumerate(reqs)]
        ours.loglikelihood(reqs[:4]), theirs.loglikelihood(inst[:4], disable_tqdm=True)  # warm-up
        t_theirs, ll_theirs = best_time(lambda: theirs.loglikelihood(inst, disable_tqdm=True), args.repeats)
        t_ours, ll_ours = best_time(lambda: ours.loglikelihood(reqs), args.repeats)
        diff = max(
            max(abs(a.total - b[0]) for a, b in zip(ll_ours, ll_theirs)),
            max(abs(s - b[0]) for s, b in zip(stored, ll_theirs)),  # the evaluator's stored sum scores too
        )
        ncand = len(rows[0]["candidates"])
        print(f"{task:<12} {ncand:>5} {len(reqs):>8} {diff:>10.2e} {t_theirs:>10.3f} {t_ours:>8.3f} {t_theirs / t_ours:>7.2f}x {t_trial:>12.3f}")
    print("full trial: fewshot-eval's whole run_trial (also scores the unconditional continuations), first run.")


if __name__ == "__main__":
    main()

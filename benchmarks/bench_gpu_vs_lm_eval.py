"""clm vs lm-evaluation-harness's ``HFLM`` on one CUDA device: same numbers, time ratio, peak GPU memory.

Both sides load the same locally built GPT-2 (``tiny-gpt2``, or ``--width``/``--layers``: seeded weights,
the tiny one's tokenizer; nothing is downloaded) in each ``--dtypes`` dtype, with the same batch size
and window, and get the same fresh requests (the generators of the CPU benchmarks beside this file):

* ``loglikelihood``: 4-choice prompts with 5 shared demonstrations and with per-example ones
  (``bench_vs_lm_eval.requests``): max |dLL| per request, fraction of examples with the same argmax;
* ``generate_until``: greedy, stop ``"\\n\\n"`` (``bench_generation_vs_lm_eval.fresh_prompts``):
  fraction of outputs identical to lm-eval's;
* ``loglikelihood_rolling``: documents longer than the window (``bench_perplexity_vs_lm_eval``): max |dLL|.

Per operation: the best of ``--repeats`` interleaved timed calls (lm-eval, ours, lm-eval, ...; CUDA
synchronised), the ratio lm-eval / ours, and ``torch.cuda.max_memory_allocated`` during one call of
each beyond what was allocated before it (both models' weights), ours / lm-eval's. It prints which
of ``clm``'s paths ran (prefix tree, the greedy loop, the attention implementation) and, with 2 or
more GPUs, ``clm`` sharded over them (``parallel.device_map: auto``) against ``clm`` on one.

One JSON line per (dtype, operation); exits 1 when float32 disagrees (|dLL| above ``--tol``, a
generation that differs, a sharded number off), so ``benchmarks/gpu_check.sh`` fails. bfloat16 is
reported, not judged: both sides round differently once their batches differ.
``--device cpu`` runs the same code on the CPU (a dry run: no memory figures).

    python benchmarks/bench_gpu_vs_lm_eval.py --width 1024 --layers 12 --n 64
    python benchmarks/bench_gpu_vs_lm_eval.py --device cpu --n 4 --dtypes float32 --repeats 1   # dry run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

from _vs_lm_eval import bench_gpt2  # benchmarks/_vs_lm_eval.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_bytes(fn: Callable[[], Any], device: str) -> tuple[Any, int]:
    """(``fn()``, its peak of CUDA memory allocated beyond what was allocated before; -1 on the CPU)."""
    import torch

    if not device.startswith("cuda"):
        return fn(), -1
    sync(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    sync(device)
    return out, torch.cuda.max_memory_allocated() - base


def timed(theirs: Callable[[], Any], ours: Callable[[], Any], repeats: int, device: str) -> tuple[float, float, Any, Any]:
    """Best of ``repeats`` interleaved calls of each (lm-eval first), CUDA synchronised: (t_theirs, t_ours, out_theirs, out_ours)."""
    best = [float("inf"), float("inf")]
    outs: list[Any] = [None, None]
    for _ in range(repeats):
        for k, fn in enumerate((theirs, ours)):
            sync(device)
            t = time.perf_counter()
            outs[k] = fn()
            sync(device)
            best[k] = min(best[k], time.perf_counter() - t)
    return best[0], best[1], outs[0], outs[1]


def clm_paths(pred: Any) -> dict:
    """Which of clm's paths this model takes: prefix tree, greedy loop, attention implementation."""
    return {"prefix_tree": bool(pred._tree_ok()), "greedy_loop": bool(pred._greedy_ok(pred.pad_token_id())),
            "attention": getattr(pred.model.config, "_attn_implementation", None)}


def workloads(args: argparse.Namespace, tokenizer: Any) -> dict[str, Any]:
    from bench_generation_vs_lm_eval import fresh_prompts
    from bench_perplexity_vs_lm_eval import fresh_documents
    from bench_vs_lm_eval import SHAPES, requests

    ll = requests(SHAPES["arc4"], "shared", args.n, args.seed, tokenizer) + requests(SHAPES["arc4"], "per-ex", args.n, args.seed + 7, tokenizer)
    return {"loglikelihood": ll, "generate_until": fresh_prompts(args.n, args.seed), "loglikelihood_rolling": fresh_documents(max(2, args.n // 4), args.seed)}


def compare(op: str, a: list, b: list, candidates: int = 4) -> dict:
    """Agreement of lm-eval's outputs ``a`` and ours ``b`` for operation ``op``."""
    if op == "generate_until":
        return {"identical": sum(x == y for x, y in zip(a, b)) / len(a)}
    if op == "loglikelihood":
        ta, tb = [x[0] for x in a], [y.total for y in b]
        argmax = lambda v: [max(range(candidates), key=lambda c: v[i + c]) for i in range(0, len(v), candidates)]  # noqa: E731
        same = sum(x == y for x, y in zip(argmax(ta), argmax(tb))) / (len(ta) // candidates)
        return {"max_abs_dll": max(abs(x - y) for x, y in zip(ta, tb)), "same_argmax": same}
    return {"max_abs_dll": max(abs(x - y.total) for x, y in zip(a, b))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run of the same code)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--width", type=int, default=None, help="GPT-2 width (n_embd; heads of 64) built locally; default: the tiny GPT-2")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--n", type=int, default=64, help="examples / prompts per workload (documents: n/4)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--max-gen-toks", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--tol", type=float, default=1e-4, help="float32: largest |dLL| allowed per request / document")
    ap.add_argument("--ops", default="loglikelihood,generate_until,loglikelihood_rolling")
    args = ap.parse_args()

    import torch
    import transformers
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor
    from fewshot_eval.evaluate.backends.predictor import GenerationRequest, Request

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: no CUDA device here (torch {torch.__version__}); use --device cpu for a dry run.")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    path = bench_gpt2(args.width, args.layers)
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__, "device": args.device,
                      "gpu": torch.cuda.get_device_name(0) if gpus else None, "gpus": gpus, "model": path,
                      "batch_size": args.batch_size, "max_length": args.max_length, "n": args.n}))
    failures: list[str] = []
    ops = args.ops.split(",")
    for dtype in args.dtypes.split(","):
        ours = CausalLMPredictor.from_settings({"name": "bench", "weights": path}, {"device": args.device, "dtype": dtype,
                                               "batch_size": args.batch_size, "max_length": args.max_length})
        theirs = HFLM(pretrained=path, device=args.device, batch_size=args.batch_size, dtype=dtype, max_length=args.max_length)
        print(json.dumps({"dtype": dtype, "clm": clm_paths(ours), "hflm_attention": getattr(theirs.model.config, "_attn_implementation", None)}))
        work = workloads(args, ours.tokenizer)
        calls: dict[str, tuple[Callable, Callable, Callable]] = {}
        ll = work["loglikelihood"]
        inst_ll = [Instance("loglikelihood", None, (c, t), i) for i, (c, t) in enumerate(ll)]
        req_ll = [Request(c, t) for c, t in ll]
        calls["loglikelihood"] = (lambda: theirs.loglikelihood(inst_ll, disable_tqdm=True), lambda: ours.loglikelihood(req_ll),
                                  lambda p: p.loglikelihood(req_ll))
        gen = [GenerationRequest(p, ("\n\n",), args.max_gen_toks) for p in work["generate_until"]]
        inst_gen = [Instance("generate_until", None, (r.context, r.gen_kwargs()), i) for i, r in enumerate(gen)]
        calls["generate_until"] = (lambda: theirs.generate_until(inst_gen, disable_tqdm=True), lambda: ours.generate_until(gen),
                                   lambda p: p.generate_until(gen))
        docs = work["loglikelihood_rolling"]
        inst_ppl = [Instance("loglikelihood_rolling", None, (d,), i) for i, d in enumerate(docs)]
        calls["loglikelihood_rolling"] = (lambda: theirs.loglikelihood_rolling(inst_ppl, disable_tqdm=True),
                                          lambda: ours.loglikelihood_rolling(docs), lambda p: p.loglikelihood_rolling(docs))
        outputs: dict[str, Any] = {}
        for op in ops:
            theirs_fn, ours_fn, _ = calls[op]
            _, mem_theirs = peak_bytes(theirs_fn, args.device)  # also the warm-up of each side
            _, mem_ours = peak_bytes(ours_fn, args.device)
            t_theirs, t_ours, a, b = timed(theirs_fn, ours_fn, args.repeats, args.device)
            outputs[op] = b
            agree = compare(op, a, b)
            row = {"dtype": dtype, "op": op, "requests": len(a), **agree, "lm_eval_s": round(t_theirs, 4), "ours_s": round(t_ours, 4),
                   "ratio": round(t_theirs / t_ours, 2)}
            if mem_ours >= 0:
                row.update(peak_mib_lm_eval=round(mem_theirs / 2**20, 1), peak_mib_ours=round(mem_ours / 2**20, 1),
                           peak_ours_over_lm_eval=round(mem_ours / max(mem_theirs, 1), 2))
            print(json.dumps(row), flush=True)
            if dtype == "float32" and (agree.get("max_abs_dll", 0.0) > args.tol or agree.get("identical", 1.0) < 1.0
                                       or agree.get("same_argmax", 1.0) < 1.0):
                failures.append(f"{dtype} {op}: {agree}")
        if gpus >= 2 and args.device.startswith("cuda"):  # clm sharded over the GPUs against clm on one
            sharded = CausalLMPredictor.from_settings({"name": "bench", "weights": path, "parallel": {"device_map": "auto"}},
                                                      {"device": "cuda", "dtype": dtype, "batch_size": args.batch_size, "max_length": args.max_length})
            for op in ops:
                got = calls[op][2](sharded)
                agree = compare(op, [x.total for x in outputs[op]] if op == "loglikelihood_rolling" else
                                [(x.total,) for x in outputs[op]] if op == "loglikelihood" else outputs[op], got)
                print(json.dumps({"dtype": dtype, "op": op, "sharded_vs_one_gpu": agree, "placement": sharded.notes}), flush=True)
                if dtype == "float32" and (agree.get("max_abs_dll", 0.0) > args.tol or agree.get("identical", 1.0) < 1.0):
                    failures.append(f"{dtype} {op} sharded: {agree}")
            del sharded
        ours = theirs = None  # frees both models before the next dtype loads (calls' closures read these names, so not del)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(json.dumps({"ok": not failures, "failures": failures, "tol": args.tol}))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

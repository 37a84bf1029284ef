"""clm vs vllm (and clm sharded) on the same weights: agreement and examples/s, on a GPU machine.

    python benchmarks/bench_gpu_backends.py                       # tiny GPT-2, vLLM TP=1
    python benchmarks/bench_gpu_backends.py --weights /ckpt/llama-8b --tp 2 --n 200

For every candidate of every example: |loglik(vllm) - loglik(clm)| (target < 1e-3 in float32) and
whether both pick the same label; then examples/s of each backend over the same trial (model
loading excluded). Prints one JSON line per backend and a summary line; exits 1 on disagreement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from fewshot_eval.evaluate import build_evaluator


def run(model: dict, params: dict, tasks: list[str], nshot: int) -> tuple[dict, float, int]:
    ev = build_evaluator(model, params)  # loads the model
    t0 = time.perf_counter()
    result = ev.run_trial(tasks, params, nshot, 0)
    wall = time.perf_counter() - t0
    cands, n = {}, 0
    for sid, rows in result.predictions.items():
        for i, row in enumerate(rows):
            n += 1
            for c in row["candidates"]:
                cands[(sid, i, c["label"])] = (sum(c["logprobs"]), row["pred"])
    return cands, wall, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="tiny-gpt2")
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--n", type=int, default=0, help="n_eval_samples (0: all)")
    ap.add_argument("--nshot", type=int, default=2)
    ap.add_argument("--tasks", default="copa_demo,nli_demo")
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args()
    tasks = a.tasks.split(",")
    params = {"seed": 0, "scoring": "sum", "device": "cuda", "dtype": a.dtype, "batch_size": a.batch_size,
              "train_sep": "\n\n", "n_eval_samples": a.n, "templates": None, "languages": None, "train_languages": None}
    base = {"name": "bench", "weights": a.weights}
    clm, t_clm, n = run({**base, "predictor": "clm"}, {**params, "predictor": "clm"}, tasks, a.nshot)
    print(json.dumps({"backend": "clm", "examples": n, "seconds": round(t_clm, 3), "examples_per_s": round(n / t_clm, 1)}))
    vllm_model = {**base, "predictor": "vllm", "parallel": {"tensor_parallel_size": a.tp, "engine_args": {"gpu_memory_utilization": 0.5}}}
    vl, t_vl, _ = run(vllm_model, {**params, "predictor": "vllm"}, tasks, a.nshot)
    print(json.dumps({"backend": f"vllm tp={a.tp}", "examples": n, "seconds": round(t_vl, 3), "examples_per_s": round(n / t_vl, 1)}))
    assert clm.keys() == vl.keys(), "the backends scored different candidates"
    worst = max(abs(clm[k][0] - vl[k][0]) for k in clm)
    same = sum(clm[k][1] == vl[k][1] for k in clm) / len(clm)
    ok = worst < 1e-3 and same == 1.0
    print(json.dumps({"candidates": len(clm), "max_abs_diff": worst, "same_argmax": same, "ok": ok}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

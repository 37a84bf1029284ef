"""clm vs vllm (and clm sharded) on the same weights: agreement and examples/s, on a GPU machine.

    python benchmarks/bench_gpu_backends.py                       # tiny GPT-2, vLLM TP=1
    python benchmarks/bench_gpu_backends.py --weights /ckpt/llama-8b --tp 2 --n 200

For every candidate of every example: |loglik(vllm) - loglik(clm)| (target < 5e-5 in float32, as
tests/test_gpu.py; 1.2e-5 measured on the tiny GPT-2) and whether both pick the same label; then
examples/s of each backend over the same trial (model loading excluded): both models loaded, one
untimed warm-up trial each, then ``--repeats`` timed trials interleaved (clm, vllm, clm, vllm ...), the
median reported. Prints one JSON line per backend and a summary line with the target; exits 1 when
the backends disagree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from fewshot_eval.evaluate import build_evaluator

TOL = 5e-5


def trial(ev, params: dict, tasks: list[str], nshot: int) -> tuple[dict, float, int]:
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
    ap.add_argument("--repeats", type=int, default=3, help="timed trials per backend, interleaved")
    a = ap.parse_args()
    tasks = a.tasks.split(",")
    params = {"seed": 0, "scoring": "sum", "device": "cuda", "dtype": a.dtype, "batch_size": a.batch_size,
              "train_sep": "\n\n", "n_eval_samples": a.n, "templates": None, "languages": None, "train_languages": None}
    base = {"name": "bench", "weights": a.weights}
    vllm_model = {**base, "predictor": "vllm", "parallel": {"tensor_parallel_size": a.tp, "engine_args": {"gpu_memory_utilization": 0.5}}}
    backends = {"clm": (build_evaluator({**base, "predictor": "clm"}, {**params, "predictor": "clm"}), {**params, "predictor": "clm"}),
                f"vllm tp={a.tp}": (build_evaluator(vllm_model, {**params, "predictor": "vllm"}), {**params, "predictor": "vllm"})}
    cands: dict[str, dict] = {}
    for name, (ev, p) in backends.items():  # symmetric warm-up: one untimed trial each
        cands[name], _, n = trial(ev, p, tasks, a.nshot)
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(a.repeats):  # interleaved, repeated
        for name, (ev, p) in backends.items():
            times[name].append(trial(ev, p, tasks, a.nshot)[1])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(json.dumps({"backend": name, "examples": n, "median_seconds": round(med, 3), "runs": [round(t, 3) for t in ts],
                          "examples_per_s": round(n / med, 1)}))
    clm, vl = cands["clm"], cands[f"vllm tp={a.tp}"]
    assert clm.keys() == vl.keys(), "the backends scored different candidates"
    worst = max(abs(clm[k][0] - vl[k][0]) for k in clm)
    same = sum(clm[k][1] == vl[k][1] for k in clm) / len(clm)
    ok = worst < TOL and same == 1.0
    print(json.dumps({"candidates": len(clm), "max_abs_diff": worst, "target_max_abs_diff": TOL, "same_argmax": same, "ok": ok}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

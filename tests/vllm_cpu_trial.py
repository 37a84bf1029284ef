"""Run trials with ``predictor: vllm`` and write each candidate's log-likelihood as JSON.

Run by tests/test_served_vllm.py in the Python that has vLLM (its own venv: ``FEWSHOT_VLLM_CPU_PYTHON``),
with this repo on PYTHONPATH:

    python tests/vllm_cpu_trial.py WEIGHTS OUT.json '[[["copa_demo"], 0], [["copa_demo", "nli_demo"], 2]]' PARAMS_JSON [PARALLEL_JSON]

PARALLEL_JSON: more of the setting's ``parallel`` (e.g. ``{"tensor_parallel_size": 2}``).

OUT.json maps "nshot|sub-result|example|label" to [log-prob total, the row's prediction].
"""

from __future__ import annotations

import json
import sys


def main() -> None:  # under a __main__ guard: vLLM's engine starts its processes with spawn
    weights, out, trials, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    parallel = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    from fewshot_eval.evaluate import build_evaluator

    model = {"name": "tiny_vllm", "predictor": "vllm", "weights": weights,
             "parallel": {"engine_args": {"max_model_len": 1024, "enforce_eager": True}, **parallel}}
    ev = build_evaluator(model, {**params, "predictor": "vllm"})
    scores = {}
    for tasks, nshot in trials:
        result = ev.run_trial(tasks, params, nshot, 0)
        for sid, rows in result.predictions.items():
            for i, row in enumerate(rows):
                for c in row["candidates"]:
                    scores[f"{nshot}|{sid}|{i}|{c['label']}"] = [sum(c["logprobs"]), row["pred"]]
    with open(out, "w") as f:
        json.dump(scores, f)


if __name__ == "__main__":
    main()

"""The same lm-eval catalog task via fewshot-eval (our predictor scores lm-eval's requests) and via
lm-eval's own ``simple_evaluate`` with its HF model, on the locally built tiny GPT-2 and local data.

    python benchmarks/bench_catalog_vs_lm_eval.py [N_DOCS] [NSHOT]

The task is the catalog's ``arc_easy`` config (included as is) on N_DOCS generated questions in ARC's
schema. Prints the evaluation time of each side (the catalog index is built beforehand and timed
apart: ~10 s once per process), their ratio and the largest difference of a metric (acc, acc_norm).
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ["stone", "water", "light", "plant", "metal", "cloud", "sound", "heat", "ice", "sand", "wind", "seed", "river", "glass"]


def write_task(root: Path, n_docs: int) -> Path:
    import lm_eval

    rng = random.Random(0)
    inc = root / "lm_eval_tasks"
    (inc / "data").mkdir(parents=True)
    for split, n in (("train", 200), ("validation", 10), ("test", n_docs)):
        with open(inc / "data" / f"{split}.jsonl", "w") as f:
            for i in range(n):
                labels = ["A", "B", "C", "D"][: rng.choice([3, 4])]
                f.write(json.dumps({"id": f"{split}-{i}", "question": f"Which of these is most like {rng.choice(WORDS)} when it is {rng.choice(WORDS)}?",
                                    "choices": {"text": rng.sample(WORDS, len(labels)), "label": labels}, "answerKey": rng.choice(labels)}) + "\n")
    arc = Path(lm_eval.__file__).parent / "tasks" / "arc" / "arc_easy.yaml"
    files = {s: str(inc / "data" / f"{s}.jsonl") for s in ("train", "validation", "test")}
    (inc / "arc_bench.yaml").write_text(f"include: {arc}\ntask: arc_bench\ntag: null\ndataset_path: json\ndataset_name: null\n"
                                        f"dataset_kwargs:\n  data_files: {json.dumps(files)}\n")
    return root


def main() -> None:
    n_docs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    nshot = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from fewshot_eval.config import conf_dir
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import catalog
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_runner import run_catalog_tasks
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    with tempfile.TemporaryDirectory() as tmp:
        conf = write_task(Path(tmp), n_docs)
        search = [conf, conf_dir()]
        t0 = time.perf_counter()
        catalog(search)
        index_s = time.perf_counter() - t0
        pred = CausalLMPredictor.from_settings({"name": "tiny_gpt2", "weights": "tiny-gpt2"}, {"device": "cpu", "dtype": "float32", "batch_size": 8})
        ref_lm = HFLM(pretrained=str(tiny_gpt2_path()), batch_size=8, device="cpu")
        ref_tm = TaskManager(include_path=str(conf / "lm_eval_tasks"), include_defaults=False)
        rows = []
        for trial in range(2):
            seed = 1234 + trial
            t0 = time.perf_counter()
            ours, _, _ = run_catalog_tasks(pred, ["lm_eval:arc_bench"], {"seed": 1234, "n_eval_samples": 0}, nshot, trial, search)
            ours_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            ref = lm_eval.simple_evaluate(model=ref_lm, tasks=["arc_bench"], num_fewshot=nshot, task_manager=ref_tm,
                                          fewshot_random_seed=seed, bootstrap_iters=0)["results"]["arc_bench"]
            ref_s = time.perf_counter() - t0
            diff = max(abs(ours["lm_eval:arc_bench"][m] - ref[f"{m},none"]) for m in ("acc", "acc_norm"))
            rows.append((trial, ours_s, ref_s, diff, ours["lm_eval:arc_bench"]["acc"], ref["acc,none"]))
    print(f"arc_easy config on {n_docs} local docs, {nshot}-shot, tiny GPT-2 on CPU, batch size 8 "
          f"(catalog index built once per process: {index_s:.1f}s, not counted below)")
    print(f"{'trial':>5} {'fewshot-eval s':>15} {'lm_eval s':>10} {'ratio':>6} {'max |diff|':>11} {'acc ours':>9} {'acc lm_eval':>12}")
    for trial, o, r, d, a, b in rows:
        print(f"{trial:>5} {o:>15.2f} {r:>10.2f} {o / r:>6.2f} {d:>11.2e} {a:>9.4f} {b:>12.4f}")
    tot_o, tot_r = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"total: fewshot-eval {tot_o:.2f}s, lm_eval {tot_r:.2f}s, ratio {tot_o / tot_r:.2f}; max metric difference {max(r[3] for r in rows):.2e}")


if __name__ == "__main__":
    main()

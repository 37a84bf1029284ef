"""The same lm-eval catalog task via fewshot-eval (our predictor scores lm-eval's requests) and via
lm-eval itself, on the locally built tiny GPT-2 and local data generated here (never seen by tests).

    python benchmarks/bench_catalog_vs_lm_eval.py [N_DOCS] [NSHOT]          # inside one process
    python benchmarks/bench_catalog_vs_lm_eval.py --processes                # whole processes, every shape
    python benchmarks/bench_catalog_vs_lm_eval.py --processes --shapes arc4 --docs 20,200 --repeats 3

Inside one process: the catalog's ``arc_easy`` config (included as is) on N_DOCS generated questions
in ARC's schema; prints the evaluation time of each side (the catalog is read beforehand and timed
apart), their ratio and the largest difference of a metric (acc, acc_norm).

``--processes``: end to end, as a user runs them, each a cold process: ``fewshot-eval -m
model=tiny_gpt2 task=<setting of lm_eval:<task>> nshot=K num_trials=1 seed=1234`` (planning, the job,
its result files) against ``lm_eval --model hf --model_args pretrained=<tiny GPT-2>,dtype=float32
--tasks <task> --num_fewshot K --include_path <dir>`` (same batch size 16, same seed), interleaved
(lm-eval, ours, lm-eval, ...; the best of ``--repeats`` of each). One lm-eval config per shape,
included from the installed catalog and pointed at fresh local data: ``arc4`` (arc_easy, 3-4
choices, 5-shot), ``arc4-0`` (the same 0-shot), ``copa2`` (super_glue copa, 2 choices, 5-shot),
``gen`` (nq_open, greedy generation, 2-shot), ``ppl`` (wikitext, rolling perplexity). First it
times planning (dry runs) of a grid over these catalog tasks against the same grid over task settings
of the project's own format (target: within 0.5 s). Prints per
case both times, the ratio lm-eval / ours (target: >= 1.00, ours at least as fast), the largest
difference of a metric the two report (relative for values above 1: perplexities) and
/proc/loadavg. Our on-disk catalog index is built before the timed runs (once per lm-eval
installation and include dir); lm-eval indexes its whole catalog in every process.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
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


def in_process(n_docs: int, nshot: int) -> None:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from fewshot_eval.config import conf_dir
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import catalog
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_runner import run_catalog_tasks

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


# -- whole processes -----------------------------------------------------------------------------

SHAPES = {  # name -> (catalog YAML under lm_eval/tasks, nshot, evaluated split, other splits)
    "arc4": ("arc/arc_easy.yaml", 5, "test", ("train", "validation")),
    "arc4-0": ("arc/arc_easy.yaml", 0, "test", ("train", "validation")),
    "copa2": ("super_glue/copa/default.yaml", 5, "validation", ("train",)),
    "gen": ("nq_open/nq_open.yaml", 2, "validation", ("train",)),
    "ppl": ("wikitext/wikitext.yaml", 0, "test", ("train", "validation")),
}


def fresh_row(shape: str, split: str, i: int, rng: random.Random) -> dict:
    """One row in the schema of the shape's dataset (invented words, seeded)."""
    w = lambda: rng.choice(WORDS)  # noqa: E731
    if shape.startswith("arc"):
        labels = ["A", "B", "C", "D"][: rng.choice([3, 4])]
        return {"id": f"{split}-{i}", "question": f"Which of these is most like {w()} when it is {w()}?",
                "choices": {"text": rng.sample(WORDS, len(labels)), "label": labels}, "answerKey": rng.choice(labels)}
    if shape == "copa2":
        return {"premise": f"The {w()} met the {w()}.", "choice1": f"The {w()} grew.", "choice2": f"The {w()} fell.",
                "question": rng.choice(["cause", "effect"]), "label": rng.randint(0, 1), "idx": i}
    if shape == "gen":
        return {"question": f"what is the {w()} of the {w()}", "answer": [w(), w()]}
    return {"page": " ".join(" ".join(w() for _ in range(rng.randint(5, 14))) + " ." for _ in range(rng.randint(4, 12)))}


def write_shapes(root: Path, shapes: list[str], n_docs: int, seed: int) -> dict[str, tuple[str, int]]:
    """Per shape: a task YAML in ``root/conf/lm_eval_tasks`` (the catalog config on fresh local files,
    absolute paths so lm-eval reads them from anywhere) and a task setting; -> shape: (task, nshot)."""
    import lm_eval

    inc = root / "conf" / "lm_eval_tasks"
    (root / "conf" / "task").mkdir(parents=True, exist_ok=True)
    out = {}
    for shape in shapes:
        src, nshot, evaluated, others = SHAPES[shape]
        rng = random.Random(f"{seed}-{shape}")
        task = f"bench_{shape.replace('-', '_')}_{n_docs}"
        files = {}
        for split in (evaluated, *others):
            f = inc / "data" / task / f"{split}.jsonl"
            f.parent.mkdir(parents=True, exist_ok=True)
            n = n_docs if split == evaluated else 40
            f.write_text("".join(json.dumps(fresh_row(shape, split, i, rng)) + "\n" for i in range(n)))
            files[split] = str(f)
        (inc / f"{task}.yaml").write_text(
            f"include: {Path(lm_eval.__file__).parent / 'tasks' / src}\ntask: {task}\ntag: null\ndataset_path: json\n"
            f"dataset_name: null\ndataset_kwargs:\n  data_files: {json.dumps(files)}\n")
        (root / "conf" / "task" / f"{task}.yaml").write_text(f"run_name: bench\ntasks: [lm_eval:{task}]\n")
        out[shape] = (task, nshot)
    return out


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def _ours_metrics(out: Path, task: str) -> dict[str, float]:
    res = json.loads(next(out.rglob("results.json")).read_text())["results"][f"lm_eval:{task}"]
    return {k: v["mean"] for k, v in res.items() if isinstance(v, dict) and "mean" in v and k != "n_examples"}


def _their_metrics(out: Path, task: str) -> dict[str, float]:
    res = json.loads(max(out.rglob("results_*.json"), key=lambda p: p.stat().st_mtime).read_text())["results"][task]
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_runner import _metric_name

    return {m: float(v) for k, v in res.items() if (m := _metric_name(k)) and isinstance(v, (int, float))}


def planning(root: Path, cases: dict[str, tuple[str, int]], repeats: int) -> None:
    """Dry runs of the same grid over the catalog tasks (one task setting each) and over as many task
    settings of the project's own format (copa_demo), cold processes, interleaved, best of ``repeats``."""
    from _vs_lm_eval import interleaved  # benchmarks/_vs_lm_eval.py

    conf = root / "conf"
    for i in range(len(cases)):
        (conf / "task" / f"bench_own_{i}.yaml").write_text(f"run_name: bench\ntasks: [copa_demo]\neval:\n  seed: {i}\n")
    grid = ["model=tiny_gpt2", "nshot=0,5", "dry_run=true", f"output_dir={root / 'plan'}", "--config-dir", str(conf)]
    catalog_tasks = "task=" + ",".join(task for task, _ in cases.values())
    own_tasks = "task=" + ",".join(f"bench_own_{i}" for i in range(len(cases)))
    t_cat, t_own, _, _ = interleaved(lambda: _run([sys.executable, "-m", "fewshot_eval", "-m", catalog_tasks, *grid], root),
                                     lambda: _run([sys.executable, "-m", "fewshot_eval", "-m", own_tasks, *grid], root), repeats)
    print(f"planning {2 * len(cases)} jobs (dry run, whole process): catalog tasks {t_cat:.2f}s, own-format tasks {t_own:.2f}s, "
          f"difference {t_cat - t_own:+.2f}s (target <= +0.50s: {'met' if t_cat - t_own <= 0.5 else 'NOT met'}); loadavg {loadavg()}")


def processes(shapes: list[str], docs: list[int], repeats: int, seed: int) -> None:
    from _vs_lm_eval import interleaved  # benchmarks/_vs_lm_eval.py
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    tiny = str(tiny_gpt2_path())
    lm_eval_bin = [sys.executable, "-m", "lm_eval"]
    print(f"whole processes, interleaved, best of {repeats}; tiny GPT-2 on CPU, batch size 16; {os.cpu_count()} CPUs; "
          f"loadavg at start {loadavg()}")
    header = (f"{'shape':<7} {'docs':>5} {'nshot':>5} {'lm-eval s':>10} {'ours s':>7} {'lm-eval/ours':>12} {'target':>7} "
              f"{'max diff':>10}  loadavg")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n_docs in docs:
            cases = write_shapes(root, shapes, n_docs, seed)
            conf = root / "conf"
            first = next(iter(cases.values()))[0]  # our catalog index of this include dir: built once, untimed
            _run([sys.executable, "-m", "fewshot_eval", "-m", "model=tiny_gpt2", f"task={first}", "nshot=0", "dry_run=true",
                  f"output_dir={root / 'warm'}", "--config-dir", str(conf)], root)
            if n_docs == docs[0]:
                planning(root, cases, max(repeats, 3))
                print(header)
            for shape, (task, nshot) in cases.items():
                runs = {"ours": 0, "theirs": 0}

                def ours() -> Path:
                    runs["ours"] += 1
                    out = root / "out" / f"{task}-ours-{runs['ours']}"
                    _run([sys.executable, "-m", "fewshot_eval", "-m", "model=tiny_gpt2", f"task={task}", f"nshot={nshot}",
                          "num_trials=1", "seed=1234", f"output_dir={out}", "--config-dir", str(conf)], root)
                    return out

                def theirs() -> Path:
                    runs["theirs"] += 1
                    out = root / "out" / f"{task}-lm_eval-{runs['theirs']}"
                    _run([*lm_eval_bin, "--model", "hf", "--model_args", f"pretrained={tiny},dtype=float32", "--device", "cpu",
                          "--batch_size", "16", "--tasks", task, "--num_fewshot", str(nshot), "--include_path",
                          str(conf / "lm_eval_tasks"), "--output_path", str(out)], root)
                    return out

                t_theirs, t_ours, their_out, our_out = interleaved(theirs, ours, repeats)
                a, b = _their_metrics(their_out, task), _ours_metrics(our_out, task)
                common = sorted(set(a) & set(b))
                diff = max((abs(a[m] - b[m]) / max(1.0, abs(a[m])) for m in common), default=float("nan"))  # relative above 1 (perplexities)
                ratio = t_theirs / t_ours
                rows.append((shape, ratio))
                print(f"{shape:<7} {n_docs:>5} {nshot:>5} {t_theirs:>10.2f} {t_ours:>7.2f} {ratio:>12.2f} {'>= 1.00':>7} "
                      f"{diff:>10.2e}  {loadavg()}   ({', '.join(common)})", flush=True)
    worst = min(r for _, r in rows)
    print(f"worst lm-eval/ours {worst:.2f} (target >= 1.00: {'met' if worst >= 1.0 else 'NOT met'}); loadavg at end {loadavg()}")


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n_docs", type=int, nargs="?", default=200, help="inside one process: evaluated documents")
    ap.add_argument("nshot", type=int, nargs="?", default=5, help="inside one process: demonstrations")
    ap.add_argument("--processes", action="store_true", help="whole cold processes, every shape")
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    ap.add_argument("--docs", default="20", help="evaluated documents per case, comma-separated (20: a short run)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=22)
    args = ap.parse_args()
    if not args.processes:
        in_process(args.n_docs, args.nshot)
        return
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        sys.exit(f"--shapes: unknown {unknown}; valid: {', '.join(SHAPES)}")
    processes(shapes, [int(d) for d in args.docs.split(",")], args.repeats, args.seed)


if __name__ == "__main__":
    main()

"""``clm`` with ``parallel.data_parallel_size``: 1 process vs N worker processes on the same requests.

Fresh data (seeded random words): ``--examples`` examples with ``--candidates`` choices each, every
example with its own ``--nshot`` demonstrations (lm-eval's per-example sampling: little to share, so
the work splits well) -- or ``--shared`` demonstrations (one set for all, computed once per worker).
One process with ``--threads`` torch threads against N workers with ``--threads // N`` each (what the
option does on a CPU), both on a GPT-2 of ``--width`` x ``--layers`` (built locally, the tiny GPT-2's
tokenizer; ``--width 0``: the tiny GPT-2 itself).

Printed: the workers' start-up (spawn, import, load: paid once per job process), the best of
``--repeats`` interleaved runs of each side's ``loglikelihood``, the ratio (1 process / N), the ratio
with the start-up counted once, the max abs difference of the log-likelihoods, and ``/proc/loadavg``
before and after (a shared machine: the load says how much the numbers can be trusted).

    HF_HUB_OFFLINE=1 python benchmarks/bench_data_parallel.py                  # 2 workers, 2 threads in all
    HF_HUB_OFFLINE=1 python benchmarks/bench_data_parallel.py --examples 40 --width 0 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

from _vs_lm_eval import bench_gpt2  # benchmarks/_vs_lm_eval.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads of a descheduled peer would dominate


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests(examples: int, candidates: int, nshot: int, shared: bool, seed: int) -> list:
    """(context, continuation) requests of a multiple-choice task made of random words."""
    from fewshot_eval.evaluate.backends.predictor import Request

    rng = random.Random(seed)
    words = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "su", "ti", "vo", "ze") for b in ("n", "r", "s", "t", "l", "m")]

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    def demo() -> str:
        return f"Question: {text(18)}?\nAnswer: {text(6)}"

    common = "\n\n".join(demo() for _ in range(nshot))
    out = []
    for _ in range(examples):
        demos = common if shared else "\n\n".join(demo() for _ in range(nshot))
        ctx = (demos + "\n\n" if demos else "") + f"Question: {text(18)}?\nAnswer:"
        out += [Request(ctx, " " + text(6)) for _ in range(candidates)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--nshot", type=int, default=3)
    ap.add_argument("--shared", action="store_true", help="one demonstration set for all examples (else per example)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads in all (each worker gets threads // workers)")
    ap.add_argument("--width", type=int, default=256, help="GPT-2 width (0: the tiny GPT-2)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    import torch

    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    torch.set_num_threads(args.threads)
    before = loadavg()
    path = bench_gpt2(args.width or None, args.layers)
    reqs = requests(args.examples, args.candidates, args.nshot, args.shared, args.seed)
    model = {"name": "bench", "weights": path}
    params = {"device": "cpu", "batch_size": args.batch_size}
    one = CausalLMPredictor.from_settings(model, params)
    t = time.perf_counter()
    many = CausalLMPredictor.from_settings({**model, "parallel": {"data_parallel_size": args.workers}}, params)
    start_up = time.perf_counter() - t
    t_one = t_many = float("inf")
    a = b = []
    pids = [p.pid for p in many.pool.procs]
    for _ in range(args.repeats):  # interleaved: machine noise hits both alike
        t, c = time.perf_counter(), time.process_time()
        a = one.loglikelihood(reqs)
        t_one, c_one = min(t_one, time.perf_counter() - t), time.process_time() - c
        t, c, w = time.perf_counter(), time.process_time(), [cpu_s(p) for p in pids]
        b = many.loglikelihood(reqs)
        t_many, c_parent = min(t_many, time.perf_counter() - t), time.process_time() - c
        c_workers = [cpu_s(p) - x for p, x in zip(pids, w)]
    many.pool.close()
    diff = max(abs(x.total - y.total) for x, y in zip(a, b))
    width = f"GPT-2 {args.width}x{args.layers}" if args.width else "tiny GPT-2"
    print(f"{width}, {len(reqs)} requests ({args.examples} examples x {args.candidates}, {args.nshot}-shot "
          f"{'shared' if args.shared else 'per example'}), batch {args.batch_size}, CPU, {args.threads} threads in all")
    print(f"  1 process ({args.threads} threads):              {t_one:7.2f} s")
    print(f"  {args.workers} workers ({max(1, args.threads // args.workers)} thread(s) each):         {t_many:7.2f} s   "
          f"(start-up {start_up:.1f} s, once per job process)")
    print(f"  CPU seconds (last run): 1 process {c_one:.1f}; workers {' + '.join(f'{x:.1f}' for x in c_workers)} "
          f"(+ {c_parent:.1f} in the job's process)")
    print(f"  ratio 1 / {args.workers}: {t_one / t_many:.2f}x   with start-up counted once: {t_one / (t_many + start_up):.2f}x   "
          f"max |dLL| {diff:.1e}")
    print(f"  /proc/loadavg (1, 5, 15 min): before {before}, after {loadavg()} -- {os.cpu_count()} cores, shared")


if __name__ == "__main__":
    main()

"""Data parallelism inside one job (``parallel.data_parallel_size: N``): N copies of the model, one per
worker process, each on its own device (``cuda:i``) or its share of the CPU threads.

The job's process keeps only the tokenizer (demonstrations fitted to ``max_length``, chat templates)
and is the one writer: :class:`DataParallelPredictor` splits each call's requests over the workers,
each worker scores its part with the real predictor (``clm``: :class:`~.causal_lm.CausalLMPredictor`,
prefix tree and all) and sends back arrays, and the results are put back in the call's order.

Requests are split by *group*, never row by row, so that prefix sharing stays within a worker
(:func:`split_groups`): the candidates of one context (one document's prompt: the same context after
lm-eval's whitespace move) always go to one worker, and the contexts are sorted, so contexts that share
a prefix (per-example demonstrations drawn alike, calibration variants) sit next to each other; the
sorted groups are cut into N contiguous runs of about equal new characters (what the prefix tree
computes). Each worker computes shared demonstrations once (N times in all). Rolling perplexity splits
by document; sampled generations of one seed stay together (their draws depend on their batch).

A worker that raises fails the call at once with one line naming it and the error (a ``ConfigError``
stays one); the workers stay usable (what the others were doing is waited for and dropped before the
next call). One that dies (killed, out of host memory, a segfault) is noticed within a second and fails
the call with its exit code, and the workers are stopped: nothing hangs. The workers are started once per process (spawned, torch's
multiprocessing) and reused by the next job of the same devices; they exit with the job's process.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import signal
import time
import traceback
from typing import Any, Callable, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.hf_base import HFPredictor
from fewshot_eval.evaluate.backends.predictor import GenerationRequest, Loglik, Request, split_whitespace

log = logging.getLogger("fewshot_eval")

POLL_S = 0.5  # how often a waiting side checks that the other is alive


# ---------------------------------------------------------------------- splitting requests
def split_groups(keys: Sequence[str], weights: Sequence[int], n: int) -> list[list[int]]:
    """Indices of ``keys`` in ``n`` parts: equal keys in one part; the distinct keys sorted (keys sharing a
    prefix are neighbours) and cut into contiguous runs of about equal cost, a key's cost being its
    characters beyond the prefix it shares with the key before it plus its items' ``weights``."""
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    order = sorted(groups)
    costs, prev = [], ""
    for k in order:
        costs.append(len(k) - len(os.path.commonprefix([prev, k])) + sum(weights[i] for i in groups[k]) + 1)
        prev = k
    total, done = sum(costs), 0
    parts: list[list[int]] = [[] for _ in range(n)]
    for k, c in zip(order, costs):
        parts[min(n - 1, int(n * (done + c / 2) / total))].extend(groups[k])
        done += c
    return [sorted(p) for p in parts]


def request_groups(operation: str, items: Sequence[Any]) -> tuple[list[str], list[int]]:
    """(group key, weight) of each request of ``operation``: see :func:`split_groups`."""
    if operation == "loglikelihood":
        pairs = [split_whitespace(r.context, r.continuation) for r in items]
        return [c for c, _ in pairs], [len(t) for _, t in pairs]
    if operation == "generate_until":
        keys = [("\0" + repr((r.gen_kwargs(), r.seed))) if r.do_sample else r.context for r in items]
        return keys, [4 * r.max_gen_toks for r in items]
    return list(items), [0] * len(items)  # loglikelihood_rolling: texts


# ---------------------------------------------------------------------- results as arrays
def pack(operation: str, results: Sequence[Any]) -> Any:
    """Results as a few numpy arrays (cheap to send); generated texts as they are."""
    if operation == "generate_until":
        return list(results)
    import numpy as np

    return {
        "n": np.array([len(r.logprobs) for r in results], dtype=np.int64),
        "lp": np.array([x for r in results for x in r.logprobs], dtype=np.float64),
        "nt": np.array([len(r.tokens) for r in results], dtype=np.int64),
        "tok": np.array([x for r in results for x in r.tokens], dtype=np.int64),
        "greedy": np.array([-1 if r.greedy is None else int(r.greedy) for r in results], dtype=np.int8),
        "summed": np.array([np.nan if r.summed is None else r.summed for r in results], dtype=np.float64),
    }


def unpack(operation: str, packed: Any) -> list[Any]:
    """:func:`pack`'s inverse (the same floats: float64 throughout)."""
    if operation == "generate_until":
        return list(packed)
    import math

    lp, tok = packed["lp"].tolist(), packed["tok"].tolist()
    out, a, b = [], 0, 0
    for n, nt, g, s in zip(packed["n"].tolist(), packed["nt"].tolist(), packed["greedy"].tolist(), packed["summed"].tolist()):
        out.append(Loglik(lp[a : a + n], tok[b : b + nt], None if g < 0 else bool(g), None if math.isnan(s) else s))
        a, b = a + n, b + nt
    return out


# ---------------------------------------------------------------------- the worker process
def _error(e: BaseException) -> tuple[str, str, str]:
    return type(e).__name__, " ".join(str(e).split()), traceback.format_exc()


def worker_main(rank: int, device: str, threads: int, tasks: Any, results: Any) -> None:
    """One worker: builds the predictor it is sent, runs the calls it is sent, sends back packed results
    (and each finished batch, when asked); exits on ``stop`` or when the job's process is gone."""
    import multiprocessing

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the job's process's to handle: it stops us
    import torch

    if threads:
        torch.set_num_threads(threads)
    parent = multiprocessing.parent_process()
    pred = None
    while True:
        try:
            msg = tasks.get(timeout=POLL_S)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        kind = msg[0]
        if kind == "stop":
            return
        try:
            if kind == "build":
                cls, model, params = msg[1:]
                pred = cls.from_settings(model, params)
                results.put((rank, "ready", {"max_length": pred.max_length, "describe": pred.describe()}))
            elif kind == "call":
                operation, items, report = msg[1:]
                if report:
                    pred.on_batch = lambda idx, res, op=operation: results.put((rank, "batch", (list(idx), pack(op, res))))
                try:
                    out = getattr(pred, operation)(items)
                finally:
                    pred.on_batch = None
                results.put((rank, "done", pack(operation, out)))
        except BaseException as e:  # noqa: BLE001 - reported to the job's process, which fails the call
            results.put((rank, "error", _error(e)))


class WorkerError(RuntimeError):
    """A data-parallel worker died or failed."""


class WorkerPool:
    """N worker processes (spawned), their task queues and one results queue."""

    def __init__(self, devices: Sequence[str], threads: int) -> None:
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.devices, self.threads = list(devices), threads
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in devices]
        self.procs = [ctx.Process(target=worker_main, args=(r, d, threads, self.tasks[r], self.results), daemon=True,
                                  name=f"fewshot-dp{r}") for r, d in enumerate(devices)]
        for p in self.procs:
            p.start()
        self.closed = False
        self.busy: set[int] = set()  # workers sent a message they have not answered (done, ready or error) yet

    def who(self, rank: int) -> str:
        return f"data-parallel worker {rank} of {len(self.procs)} ({self.devices[rank]}, pid {self.procs[rank].pid})"

    def receive(self, waiting: set[int], doing: str, raise_errors: bool = True) -> tuple[int, str, Any]:
        """The next message of a worker in ``waiting``; a worker that died (or failed: ``raise_errors``) raises one line."""
        while True:
            try:
                rank, kind, payload = self.results.get(timeout=POLL_S)
            except queue.Empty:
                dead = [r for r in sorted(waiting) if not self.procs[r].is_alive()]
                if dead:
                    code = self.procs[dead[0]].exitcode
                    how = (f"was killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
                           else f"exited with code {code}")
                    self.close()
                    raise WorkerError(f"{self.who(dead[0])} {how} while {doing}; the job fails (see its log for the cause, "
                                      f"e.g. out of memory; parallel.data_parallel_size=1 runs in one process)") from None
                continue
            if kind == "error" and raise_errors:
                name, message, trace = payload
                log.debug("%s failed:\n%s", self.who(rank), trace)
                self.busy.discard(rank)
                line = f"{self.who(rank)} failed while {doing}: {name}: {message}"
                raise (ConfigError(line) if name == "ConfigError" else WorkerError(line))
            if kind != "batch":  # the worker's last message on what it was sent
                self.busy.discard(rank)
            if rank in waiting:
                return rank, kind, payload

    def send(self, rank: int, message: tuple) -> None:
        self.busy.add(rank)
        self.tasks[rank].put(message)

    def settle(self) -> None:
        """Wait for the workers still on an earlier message (a call that failed in another worker, one interrupted)
        and drop their answers, so that the next call reads only its own."""
        while self.busy:
            self.receive(set(self.busy), "finishing a failed call", raise_errors=False)

    def close(self) -> None:
        """Stop the workers (politely, then by force) and forget this pool."""
        global _pool
        if self.closed:
            return
        self.closed = True
        for t in self.tasks:
            try:
                t.put(("stop",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1)
        if _pool is self:
            _pool = None


_pool: Optional[WorkerPool] = None


def worker_pool(devices: Sequence[str], threads: int) -> WorkerPool:
    """The process's pool for these devices: the running one, else a new one (the old one stopped)."""
    global _pool
    if _pool is not None and (_pool.devices, _pool.threads) == (list(devices), threads) and all(p.is_alive() for p in _pool.procs):
        return _pool
    if _pool is not None:
        _pool.close()
    _pool = WorkerPool(devices, threads)
    return _pool


@atexit.register
def _stop_workers() -> None:
    if _pool is not None:
        _pool.close()


# ---------------------------------------------------------------------- the predictor the job sees
class DataParallelPredictor(HFPredictor):
    """The job's view of N copies of ``cls`` in worker processes: the same operations, results and
    capabilities as one copy; only the tokenizer lives here."""

    def __init__(self, cls: type, tokenizer: Any, pool: WorkerPool, info: dict[str, Any]) -> None:
        self.cls, self.tokenizer, self.pool = cls, tokenizer, pool
        self.name, self.operations, self.reports_batches = cls.name, cls.operations, cls.reports_batches
        self.max_length = info["max_length"]
        self.batch_size = info.get("batch_size")
        self._describe = {**info["describe"], "data_parallel_size": len(pool.procs), "devices": list(pool.devices)}

    @classmethod
    def start(cls, inner: type, model: dict[str, Any], params: dict[str, Any], devices: Sequence[str], threads: int,
              tokenizer: Any) -> "DataParallelPredictor":
        """Workers on ``devices`` (``threads`` torch threads each; 0: torch's default), each building
        ``inner.from_settings(model, params with its device)``; waits until all are ready."""
        t0 = time.perf_counter()
        pool = worker_pool(devices, threads)
        pool.settle()
        for r, d in enumerate(devices):
            pool.send(r, ("build", inner, model, {**params, "device": d}))
        infos: dict[int, Any] = {}
        while len(infos) < len(devices):
            rank, kind, payload = pool.receive(set(range(len(devices))) - set(infos), "loading the model")
            if kind == "ready":
                infos[rank] = payload
        log.info("data parallel: %d workers (%s) ready in %.1fs", len(devices), ", ".join(devices), time.perf_counter() - t0)
        return cls(inner, tokenizer, pool, {**infos[0], "batch_size": params.get("batch_size")})

    def describe(self) -> dict:
        return dict(self._describe)

    def _run(self, operation: str, items: Sequence[Any], report: Optional[Callable] = None) -> list[Any]:
        """``operation`` on ``items`` over the workers (split by group), results in ``items``' order."""
        if not items:
            return []
        if self.pool.closed:
            raise WorkerError(f"the data-parallel workers of this job were stopped after an error; {operation} cannot run")
        self.pool.settle()
        keys, weights = request_groups(operation, items)
        parts = split_groups(keys, weights, len(self.pool.procs))
        waiting = {r for r, part in enumerate(parts) if part}
        for r in waiting:
            self.pool.send(r, ("call", operation, [items[i] for i in parts[r]], report is not None))
        out: list[Any] = [None] * len(items)
        while waiting:
            rank, kind, payload = self.pool.receive(waiting, f"scoring {operation} ({len(items)} requests)")
            if kind == "batch" and report is not None:
                idx, packed = payload
                report([parts[rank][i] for i in idx], unpack(operation, packed))
            elif kind == "done":
                for i, res in zip(parts[rank], unpack(operation, payload)):
                    out[i] = res
                waiting.discard(rank)
        return out

    def loglikelihood(self, requests: Sequence[Request]) -> list[Loglik]:
        return self._run("loglikelihood", requests, self.on_batch)

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[Loglik]:
        return self._run("loglikelihood_rolling", texts)

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        return self._run("generate_until", requests, self.on_batch)

"""What the ``bench_*vs_lm_eval.py`` benchmarks share: their common options, the tiny GPT-2
loaded by both sides, and the interleaved best-of timing of lm-eval's call against ours.

The scripts beside it import it as ``from _vs_lm_eval import ...`` (run as
``python benchmarks/<script>.py``, their own folder is first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable, Optional

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


class _SetClock(argparse.Action):
    """``--clock``: the timer of :func:`interleaved`, set as the option is parsed."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: Any, option: Optional[str] = None) -> None:
        global _clock
        _clock = CLOCKS[value]
        setattr(namespace, self.dest, value)


def add_common_args(ap: argparse.ArgumentParser, *, seed: int, max_length: Optional[int], repeats: int,
                    max_length_help: Optional[str] = None) -> None:
    """``--seed``, ``--batch-size`` (8), ``--max-length``, ``--repeats``, ``--threads`` (2), ``--clock``
    (wall) and ``--hf-overrides`` (JSON, fewshot-eval's side only), with these defaults."""
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=max_length, help=max_length_help)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=None, help="a wider GPT-2 than the tiny one (n_embd; heads of 64), built "
                    "locally with deterministic weights and the same tokenizer: per-call overheads weigh less")
    ap.add_argument("--layers", type=int, default=2, help="layers of the --width model")
    ap.add_argument("--clock", choices=tuple(CLOCKS), default="wall", action=_SetClock,
                    help="wall: perf_counter; cpu: this process's CPU seconds (user+sys, all threads): steadier than wall "
                    "time on a loaded machine, with --threads 1")
    ap.add_argument("--hf-overrides", type=json.loads, default={}, help="JSON: the model setting's hf_overrides for fewshot-eval's "
                    "side, e.g. '{\"activation_function\": \"gelu_pytorch_tanh\"}' (GPT-2's fused GELU)")


def bench_gpt2(width: Optional[int], layers: int = 2) -> str:
    """Path of the model both sides load: the tiny GPT-2 (``width`` None), or a GPT-2 of ``width``
    (heads of 64) x ``layers`` with the tiny one's tokenizer and seeded weights, built once into the cache."""
    from fewshot_eval.config import cache_dir
    from fewshot_eval.evaluate.backends.tiny_model import build_model, tiny_gpt2_path

    tiny = tiny_gpt2_path()
    if width is None:
        return str(tiny)
    path = cache_dir() / f"bench-gpt2-w{width}-l{layers}"
    if not (path / "config.json").is_file():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tiny)
        model = build_model(len(tok), tok.eos_token_id, n_embd=width, n_layer=layers, n_head=max(1, width // 64))
        model.save_pretrained(path)
        tok.save_pretrained(path)
    return str(path)


def our_predictor(path: str, batch_size: int, max_length: Optional[int], hf_overrides: Optional[dict] = None, device: str = "cpu") -> Any:
    """fewshot-eval's ``CausalLMPredictor`` on the model at ``path``, fp32 on ``device``."""
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    return CausalLMPredictor.from_settings({"name": "tiny-gpt2", "weights": path, "hf_overrides": hf_overrides or {}},
                                           {"device": device, "batch_size": batch_size, "max_length": max_length})


def lm_eval_hflm(path: str, batch_size: int, max_length: Optional[int], device: str = "cpu") -> Any:
    """lm-eval's ``HFLM`` on the model at ``path``, fp32 on ``device``, the same batch size and window."""
    from lm_eval.models.huggingface import HFLM

    window = {"max_length": max_length} if max_length else {}
    return HFLM(pretrained=path, device=device, batch_size=batch_size, dtype="float32", **window)


def tiny_predictors(batch_size: int, max_length: Optional[int], threads: Optional[int] = None,
                    hf_overrides: Optional[dict] = None, weights: Optional[str] = None) -> tuple[str, Any, Any]:
    """(weights path, our ``CausalLMPredictor``, lm-eval's ``HFLM``): the locally built tiny GPT-2
    loaded by both, fp32 on the CPU, the same batch size and window (``max_length`` None: the
    model's). ``threads`` sets torch's thread count first; ``hf_overrides`` go to our side's setting;
    ``weights``: another model dir (:func:`bench_gpt2`)."""
    import torch

    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    if threads is not None:
        torch.set_num_threads(threads)
    path = weights or str(tiny_gpt2_path())
    return path, our_predictor(path, batch_size, max_length, hf_overrides), lm_eval_hflm(path, batch_size, max_length)


def interleaved(theirs_fn: Callable[[], Any], ours_fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any, Any]:
    """(lm-eval's time, ours, lm-eval's last output, ours): the best of ``repeats`` runs of each,
    alternated (theirs, ours, theirs, ...) so that machine noise hits both alike; timed by ``--clock``."""
    t_theirs = t_ours = float("inf")
    a = b = None
    for _ in range(repeats):
        t = _clock()
        a = theirs_fn()
        t_theirs = min(t_theirs, _clock() - t)
        t = _clock()
        b = ours_fn()
        t_ours = min(t_ours, _clock() - t)
    return t_theirs, t_ours, a, b

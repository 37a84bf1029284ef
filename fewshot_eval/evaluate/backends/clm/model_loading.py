"""Loading a HuggingFace causal LM for ``clm``: once per process, on one device or sharded by accelerate.

:func:`load_model` keeps the last (model, tokenizer) loaded, so the jobs of one model that run in
one process share it; with ``parallel.device_map`` accelerate spreads the model over the visible
GPUs, CPU memory and disk (:func:`memory_map`: the setting's ``parallel.max_memory``), and input
ids go to the device of its first module (:func:`input_device`).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any, Optional

from fewshot_eval.config import ConfigError

log = logging.getLogger("fewshot_eval")

DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's sharding strategies


@functools.lru_cache(maxsize=1)
def load_model(weights: str, revision: Optional[str], dtype: str, device: str, device_map: Optional[str] = None,
               max_memory: tuple = (), offload_folder: Optional[str] = None, hf_overrides: str = "{}") -> tuple[Any, Any]:
    """(model, tokenizer), loaded once per process: the jobs of one model that run in one process
    (the sequential launcher, a combine_tasks SLURM job) share it. Only the last one is kept.

    ``device_map`` (one of :data:`DEVICE_MAPS`) shards the model over the visible GPUs (then CPU
    memory, then ``offload_folder`` on disk) with accelerate, each device holding at most its
    ``max_memory`` entry (``((0, "70GiB"), (1, "70GiB"), ("cpu", "200GiB"))``); ``device`` is then unused.
    ``hf_overrides`` (JSON of a mapping) updates the model's config (``from_pretrained`` keyword arguments)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    tok = AutoTokenizer.from_pretrained(weights, **kwargs)
    kwargs.update(json.loads(hf_overrides))
    if device_map:
        if offload_folder:
            kwargs["offload_folder"] = offload_folder
        lm = AutoModelForCausalLM.from_pretrained(weights, dtype=getattr(torch, dtype), device_map=device_map,
                                                  max_memory=dict(max_memory) or None, **kwargs).eval()
        where = f"device_map={device_map}: " + ", ".join(f"{d}: {n} modules" for d, n in placement(lm).items())
    else:
        lm = AutoModelForCausalLM.from_pretrained(weights, dtype=getattr(torch, dtype), **kwargs).to(device).eval()
        where = device
    log.info("loaded model %s (%s, %s) in %.1fs", weights, dtype, where, time.perf_counter() - t0)
    return lm, tok




def placement(model: Any) -> dict[str, int]:
    """Device -> number of top-level modules accelerate put there (``hf_device_map``)."""
    out: dict[str, int] = {}
    for d in (getattr(model, "hf_device_map", None) or {}).values():
        out[str(d)] = out.get(str(d), 0) + 1
    return out


def input_device(model: Any, default: str) -> str:
    """Where input ids go: the device of a sharded model's first module (its embeddings);
    CPU when that module is offloaded (to CPU or disk: accelerate runs it on the CPU)."""
    placement = getattr(model, "hf_device_map", None)
    if not placement:
        return default
    first = next(iter(placement.values()))
    if first in ("cpu", "disk"):
        return "cpu"
    return f"cuda:{first}" if isinstance(first, int) else str(first)


def memory_map(value: Any) -> tuple:
    """The setting's ``parallel.max_memory`` as a hashable, accelerate-ready tuple of (device, limit):
    integer-like keys are GPU indices (``"0"`` -> 0), others (``cpu``, ``disk``, ``mps``) stay."""
    if not value:
        return ()
    if not isinstance(value, dict):
        raise ConfigError(f"parallel.max_memory must be a mapping like {{0: 70GiB, 1: 70GiB, cpu: 200GiB}}, got {value!r}.")
    out = []
    for k, v in value.items():
        key: Any = int(k) if isinstance(k, int) or (isinstance(k, str) and k.isdigit()) else str(k)
        out.append((key, v))
    return tuple(out)

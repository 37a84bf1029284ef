"""``clm``: any HuggingFace causal LM (``AutoModelForCausalLM``), loaded once per process and model.

Tokenisation is exactly lm-evaluation-harness's HF model (``HFLM``): trailing whitespace of
the context moves to the continuation; ``whole = encode(context + continuation)``,
``ctx = encode(context)``, continuation tokens = ``whole[len(ctx):]``; an empty context
becomes the BOS (else EOS) token; the model sees ``(ctx + cont)[-(max_length + 1):][:-1]``.
So :meth:`CausalLMPredictor.loglikelihood` sums equal lm-eval's ``loglikelihood``.

Speed: requests are sorted by their token ids, so those sharing a prefix (the trial's
demonstrations, an example's prompt) are neighbours, and cut into batches. A batch runs the
prefix its requests share once (batch size 1), reusing the key/value cache of the previous
batch's prefix as far as they agree (the trial's demonstrations are computed once, not once
per candidate), then all its requests' remaining tokens together (right-padded: under causal
attention no mask is needed). Log-softmax is taken only at continuation positions.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from typing import Any, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.api import Loglik, Predictor, Request
from fewshot_eval.evaluate.checks import DEVICE_MAPS, DTYPES
from fewshot_eval.evaluate.registry import register_predictor

log = logging.getLogger("fewshot_eval")


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@functools.lru_cache(maxsize=1)
def load_model(weights: str, revision: Optional[str], dtype: str, device: str, device_map: Optional[str] = None,
               max_memory: tuple = (), offload_folder: Optional[str] = None) -> tuple[Any, Any]:
    """(model, tokenizer), loaded once per process: the jobs of one model that run in one process
    (the sequential launcher, a combine_tasks SLURM job) share it. Only the last one is kept.

    ``device_map`` (one of :data:`DEVICE_MAPS`) shards the model over the visible GPUs (then CPU
    memory, then ``offload_folder`` on disk) with accelerate, each device holding at most its
    ``max_memory`` entry (``((0, "70GiB"), (1, "70GiB"), ("cpu", "200GiB"))``); ``device`` is then unused."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    tok = AutoTokenizer.from_pretrained(weights, **kwargs)
    if device_map:
        if offload_folder:
            kwargs["offload_folder"] = offload_folder
        lm = AutoModelForCausalLM.from_pretrained(weights, dtype=getattr(torch, dtype), device_map=device_map,
                                                  max_memory=dict(max_memory) or None, **kwargs).eval()
        where = f"device_map={device_map}: " + ", ".join(f"{d}: {n} modules" for d, n in _placement(lm).items())
    else:
        lm = AutoModelForCausalLM.from_pretrained(weights, dtype=getattr(torch, dtype), **kwargs).to(device).eval()
        where = device
    log.info("loaded model %s (%s, %s) in %.1fs", weights, dtype, where, time.perf_counter() - t0)
    return lm, tok


def _placement(model: Any) -> dict[str, int]:
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


@register_predictor("clm")
class CausalLMPredictor(Predictor):
    is_lm = True

    def __init__(self, model: Any, tokenizer: Any, *, device: str = "cpu", batch_size: int = 8, max_length: Optional[int] = None, name: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(max_length or self._model_max_length())
        self.name = name
        self.notes: list[str] = []
        # transformers >= 5.2x renamed ``past_key_values`` to ``cache`` (argument and output)
        import inspect

        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    # ------------------------------------------------------------------ loading
    @classmethod
    def check_settings(cls, model: dict[str, Any], params: dict[str, Any]) -> None:
        par = model.get("parallel") or {}
        device_map = par.get("device_map")
        if device_map is not None and device_map not in DEVICE_MAPS:
            raise ConfigError(f"model '{model.get('name', '?')}': parallel.device_map {device_map!r} is not one of "
                              f"{', '.join(DEVICE_MAPS)} (or null: one device).")
        memory_map(par.get("max_memory"))

    @classmethod
    def from_settings(cls, model: dict[str, Any], params: dict[str, Any]) -> "CausalLMPredictor":
        import torch

        weights = model.get("weights")
        if not weights:
            raise ConfigError(f"model '{model.get('name', '?')}': predictor 'clm' needs 'weights' (a local dir, a hub id, or 'tiny-gpt2').")
        if weights == "tiny-gpt2":
            from fewshot_eval.evaluate.tiny_model import tiny_gpt2_path

            weights = str(tiny_gpt2_path())
        device = params.get("device") or "auto"
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device: '{device}' but no CUDA device is available. Use device=cpu or device=auto.")
        dtype = params.get("dtype") or "float32"
        if dtype not in DTYPES:
            raise ConfigError(f"dtype: unknown dtype '{dtype}'. Valid: {', '.join(DTYPES)}.")
        notes = []
        if device == "cpu" and dtype == "float16":
            notes.append("dtype float16 is not supported well on CPU; using float32.")
            dtype = "float32"
        cls.check_settings(model, params)
        par = model.get("parallel") or {}
        device_map = par.get("device_map")
        lm, tok = load_model(weights, model.get("revision"), dtype, device, device_map, memory_map(par.get("max_memory")),
                             par.get("offload_folder"))
        if device_map:
            device = input_device(lm, device)
            notes.append(f"sharded with device_map={device_map}: {_placement(lm)}")
        pred = cls(lm, tok, device=device, batch_size=params.get("batch_size") or 8, max_length=params.get("max_length"), name=model.get("name", weights))
        pred.notes = notes
        return pred

    def _model_max_length(self) -> int:
        cfg = self.model.config
        for attr in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        tml = getattr(self.tokenizer, "model_max_length", None)
        return tml if isinstance(tml, int) and tml < 1_000_000 else 2048

    def describe(self) -> dict:
        out = {"predictor": "clm", "model": self.name, "device": self.device, "max_length": self.max_length}
        if self.notes:
            out["predictor_notes"] = list(self.notes)
        return out

    # ------------------------------------------------------------------ tokenisation (lm-eval's)
    def tok_encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def num_tokens(self, text: str) -> int:
        return len(self.tok_encode(text)) if text else 1

    def prefix_token_id(self) -> int:
        tid = self.tokenizer.bos_token_id
        return tid if tid is not None else self.tokenizer.eos_token_id

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens), as lm-evaluation-harness's HFLM."""
        if context == "":
            cont = list(self.tokenizer.encode(continuation, add_special_tokens=False))
            return ([self.prefix_token_id()], cont) if cont and cont[0] != self.prefix_token_id() else (cont[:1], cont[1:])
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        return ctx, whole[len(ctx) :]

    # ------------------------------------------------------------------ scoring
    def _encode_many(self, texts: Sequence[str]) -> dict[str, list[int]]:
        """``tok_encode`` of many texts in one batched tokenizer call (each distinct text once)."""
        distinct = list(dict.fromkeys(texts))
        if not distinct:
            return {}
        ids = self.tokenizer(distinct)["input_ids"]
        return dict(zip(distinct, (list(x) for x in ids)))

    def loglikelihood(self, requests: Sequence[Request]) -> list[Loglik]:
        unique: dict[tuple[str, str], int] = {}
        for r in requests:
            unique.setdefault((r.context, r.continuation), len(unique))
        pairs = []
        for ctx, cont in unique:  # lm-eval's whitespace move; empty contexts handled by encode_pair
            n = len(ctx) - len(ctx.rstrip())
            pairs.append((ctx[:-n], ctx[-n:] + cont) if n else (ctx, cont))
        enc = self._encode_many([c for c, _ in pairs if c] + [c + t for c, t in pairs if c])
        seqs = []
        for (ctx_raw, cont_raw), (ctx, cont) in zip(unique, pairs):
            if ctx:
                c = enc[ctx]
                t = enc[ctx + cont][len(c) :]
            else:
                c, t = self.encode_pair(ctx_raw, cont_raw)
            if not t:
                raise ValueError(f"empty continuation for context ending {ctx[-40:]!r}")
            full = (c + t)[-(self.max_length + 1) :]
            seqs.append((full[:-1], full[-len(t) :] if len(t) < len(full) else full[1:]))
        results = self._score_tokens(seqs)
        return [results[unique[(r.context, r.continuation)]] for r in requests]

    def _score_tokens(self, seqs: list[tuple[list[int], list[int]]]) -> list[Loglik]:
        """``seqs``: (input ids, continuation ids); the continuation's log-probs come from the
        last ``len(cont)`` input positions."""
        import torch

        order = sorted(range(len(seqs)), key=lambda i: seqs[i][0])
        # positions < start(i) are context only: their logits are not needed, so they may be cached
        start = [len(inp) - len(cont) for inp, cont in seqs]
        out: list[Optional[Loglik]] = [None] * len(seqs)
        if not seqs:
            return []
        prev_ids: list[int] = []  # the previous batch's shared prefix and its (batch-1) cache
        prev_cache: Any = None
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                idx = order[b : b + self.batch_size]
                first, last = seqs[idx[0]][0], seqs[idx[-1]][0]
                p = min(_common_prefix(first, last), min(start[i] for i in idx))
                cache = None
                if p:
                    reuse = _common_prefix(prev_ids, first[:p]) if prev_cache is not None else 0
                    if reuse and (reuse == len(prev_ids) or getattr(prev_cache, "is_croppable", True)):
                        cache = copy.deepcopy(prev_cache)
                        if reuse < len(prev_ids):
                            cache.crop(reuse - len(prev_ids))  # negative: drop that many tokens (all versions)
                    else:
                        reuse = 0
                    if p > reuse:
                        cache = self._prefix_cache(first[reuse:p], cache)
                    prev_ids, prev_cache = first[:p], copy.deepcopy(cache)
                    cache.batch_repeat_interleave(len(idx))
                rest = [seqs[i][0][p:] for i in idx]
                width = max(len(r) for r in rest)
                ids = torch.zeros((len(idx), width), dtype=torch.long)
                for row, r in enumerate(rest):
                    ids[row, : len(r)] = torch.tensor(r, dtype=torch.long)
                logits = self.model(input_ids=ids.to(self.device), **{self._cache_arg: cache}, use_cache=cache is not None).logits
                rows, cols, targets, spans = [], [], [], []
                for row, i in enumerate(idx):
                    cont = seqs[i][1]
                    s = start[i] - p
                    spans.append((i, len(targets), len(cont)))
                    rows.extend([row] * len(cont))
                    cols.extend(range(s, s + len(cont)))
                    targets.extend(cont)
                sel = logits[torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device)].float()
                lp = torch.log_softmax(sel, dim=-1)
                tgt = torch.tensor(targets, device=lp.device)
                tok_lp = lp.gather(1, tgt[:, None])[:, 0].tolist()
                greedy = (sel.argmax(-1) == tgt).tolist()
                for i, off, n in spans:
                    out[i] = Loglik(tok_lp[off : off + n], list(seqs[i][1]), all(greedy[off : off + n]))
        return out  # type: ignore[return-value]

    def _prefix_cache(self, ids: list[int], cache: Any) -> Any:
        import torch

        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=x, **{self._cache_arg: cache}, use_cache=True)
        return getattr(out, self._cache_arg)

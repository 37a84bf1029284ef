"""``clm``: any HuggingFace causal LM (``AutoModelForCausalLM``), loaded once per process and model.

Tokenisation is exactly lm-evaluation-harness's HF model (``HFLM``), from
:class:`~fewshot_eval.evaluate.backends.hf_base.HFPredictor`; the model sees
``(ctx + cont)[-(max_length + 1):][:-1]``. So :meth:`CausalLMPredictor.loglikelihood` sums equal
lm-eval's ``loglikelihood``.

This module is the registered class: loading (:mod:`.model_loading`), the operations' entry points
and the choice of scoring path. The work is done by its mixins, one module per job:

* :mod:`.tree_scoring` -- every common prefix of a call's requests computed once (a prefix tree,
  :mod:`.prefix_tree`), for models whose cache and attention take a tree mask;
* :mod:`.linear_scoring` -- the fallback: sorted batches, each running the prefix its requests
  share once, reusing the previous batch's key/value cache as far as they agree;
* :mod:`.greedy_generation` -- ``generate_until``, lm-evaluation-harness's ``HFLM.generate_until``
  step for step (same outputs), greedy batches sharing the demonstrations' key/value cache;
* :mod:`.out_of_memory` -- a CUDA out-of-memory error retried once at half the batch, else one line
  saying what to set.

Both ``loglikelihood`` and ``generate_until`` report each finished batch to ``on_batch`` when
the resume cache (``evaluate.resume``) sets it, keeping their own batching.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.clm.greedy_generation import GreedyGeneration
from fewshot_eval.evaluate.backends.clm.linear_scoring import LinearScoring
from fewshot_eval.evaluate.backends.clm.model_loading import DEVICE_MAPS, input_device, load_model, memory_map, placement
from fewshot_eval.evaluate.backends.clm.out_of_memory import OutOfMemoryRetry
from fewshot_eval.evaluate.backends.clm.tree_scoring import TreeScoring
from fewshot_eval.evaluate.backends.hf_base import POSITION_KEYS, HFPredictor, weights_path
from fewshot_eval.evaluate.backends.predictor import GenerationRequest, Loglik, Request
from fewshot_eval.evaluate.registry import register_predictor
from fewshot_eval.param_schema import typed_params


def data_parallel_size(model: dict[str, Any]) -> int:
    """The setting's ``parallel.data_parallel_size`` (1 when unset)."""
    return int((model.get("parallel") or {}).get("data_parallel_size") or 1)


@register_predictor("clm", operations=("loglikelihood", "loglikelihood_rolling", "generate_until"))
class CausalLMPredictor(TreeScoring, LinearScoring, GreedyGeneration, OutOfMemoryRetry, HFPredictor):
    """A HuggingFace causal LM on one device or sharded (``parallel.device_map``); its mixins score and generate."""

    reports_batches = frozenset({"loglikelihood", "generate_until"})
    data_parallel = True  # parallel.data_parallel_size: N copies in worker processes (:mod:`.data_parallel`)

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
        self._logits_to_keep = "logits_to_keep" in params
        self._tree: Optional[bool] = None  # prefix-tree scoring works for this model (checked on first use)
        self._gen_prefix: tuple[tuple[int, ...], Any] = ((), None)  # generation's shared prefix and its per-layer cache

    # ------------------------------------------------------------------ loading
    @classmethod
    def check_settings(cls, model: dict[str, Any], params: dict[str, Any]) -> None:
        super().check_settings(model, params)
        par = model.get("parallel") or {}
        device_map = par.get("device_map")
        if device_map is not None and device_map not in DEVICE_MAPS:
            raise ConfigError(f"model '{model.get('name', '?')}': parallel.device_map {device_map!r} is not one of "
                              f"{', '.join(DEVICE_MAPS)} (or null: one device).")
        memory_map(par.get("max_memory"))
        dp, device = data_parallel_size(model), params.get("device") or "auto"
        if dp > 1 and device_map is not None:
            raise ConfigError(f"model '{model.get('name', '?')}': parallel.data_parallel_size={dp} copies the whole model to each "
                              f"device, parallel.device_map={device_map} shards it over them: set one of them (data_parallel_size=1 "
                              f"or device_map=null).")
        if dp > 1 and device.startswith("cuda:"):
            raise ConfigError(f"model '{model.get('name', '?')}': parallel.data_parallel_size={dp} puts worker i on cuda:i, so "
                              f"device={device} cannot hold; use device=cuda or device=auto (CUDA_VISIBLE_DEVICES picks the GPUs).")

    @classmethod
    def node_gpus(cls, model: dict[str, Any], asked: int) -> int:
        """A data-parallel job on GPUs gets one GPU per copy."""
        return max(asked, data_parallel_size(model)) if asked else 0

    @classmethod
    def from_settings(cls, model: dict[str, Any], params: dict[str, Any]) -> "CausalLMPredictor":
        import torch

        cls.check_settings(model, params)
        weights = weights_path(model["weights"])
        p = typed_params(params)  # the fields of fewshot_eval/param_schema.py, defaults filled in
        device = p.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device: '{device}' but no CUDA device is available. Use device=cpu or device=auto.")
        if data_parallel_size(model) > 1:
            return cls._data_parallel(model, params, weights, device)
        dtype = cls.job_dtype(params)
        notes = []
        if device == "cpu" and dtype == "float16":
            notes.append("dtype float16 is not supported well on CPU; using float32.")
            dtype = "float32"
        par = model.get("parallel") or {}
        device_map = par.get("device_map")
        lm, tok = load_model(weights, model.get("revision"), dtype, device, device_map, memory_map(par.get("max_memory")),
                             par.get("offload_folder"), json.dumps(model.get("hf_overrides") or {}, sort_keys=True))
        if device_map:
            device = input_device(lm, device)
            notes.append(f"sharded with device_map={device_map}: {placement(lm)}")
        pred = cls(lm, tok, device=device, batch_size=p.batch_size, max_length=p.max_length, name=model.get("name", weights))
        pred.notes = notes
        return pred

    @classmethod
    def _data_parallel(cls, model: dict[str, Any], params: dict[str, Any], weights: str, device: str) -> Any:
        """N copies in worker processes (:mod:`.data_parallel`): worker i on cuda:i, or on the CPU with
        its share of the threads; the tokenizer stays here."""
        import torch
        from transformers import AutoTokenizer

        from fewshot_eval.evaluate.backends.clm.data_parallel import DataParallelPredictor

        n = data_parallel_size(model)
        if device == "cuda" and torch.cuda.device_count() < n:
            raise ConfigError(f"model '{model.get('name', '?')}': parallel.data_parallel_size={n} needs {n} GPUs, "
                              f"{torch.cuda.device_count()} visible. Ask for {n} (resources.gpus_per_node) or lower it.")
        devices = [f"cuda:{i}" for i in range(n)] if device == "cuda" else [device] * n
        threads = max(1, torch.get_num_threads() // n) if device == "cpu" else 0
        one = {**model, "weights": weights, "parallel": {**(model.get("parallel") or {}), "data_parallel_size": 1}}
        tok = AutoTokenizer.from_pretrained(weights, **({"revision": model["revision"]} if model.get("revision") else {}))
        return DataParallelPredictor.start(cls, one, params, devices, threads, tok)

    def _model_max_length(self) -> int:
        cfg = self.model.config
        for attr in POSITION_KEYS:
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


    # ------------------------------------------------------------------ scoring
    def loglikelihood(self, requests: Sequence[Request]) -> list[Loglik]:
        unique: dict[tuple[str, str], int] = {}
        for r in requests:
            unique.setdefault((r.context, r.continuation), len(unique))
        seqs = []
        one = {}.setdefault  # one int object per token id: a tokenizer returns a new one per token (above 256), per context
        for (ctx, _), (c, t) in zip(unique, self.encode_pairs(list(unique))):  # lm-eval's split, batched tokenizer calls
            if not t:
                raise ValueError(f"empty continuation for context ending {ctx.rstrip()[-40:]!r}")
            full = (c + t)[-(self.max_length + 1) :]
            full = list(map(one, full, full))
            seqs.append((tuple(full[:-1]), full[-len(t) :] if len(t) < len(full) else full[1:]))  # a tuple: the prefix tree keeps it
        report = None
        if self.on_batch is not None:  # tell the resume cache of each finished batch, as request indices
            hook, where = self.on_batch, [[] for _ in seqs]
            for j, r in enumerate(requests):
                where[unique[(r.context, r.continuation)]].append(j)
            report = lambda done, res: hook([j for s in done for j in where[s]], [x for s, x in zip(done, res) for _ in where[s]])  # noqa: E731
        results = self._score_tokens(seqs, report)
        return [results[unique[(r.context, r.continuation)]] for r in requests]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[Loglik]:
        """Per-token log-probs of each whole text, exactly as lm-evaluation-harness's HFLM
        ``loglikelihood_rolling``: the text's tokens (no special tokens) are cut by lm-eval's own
        ``get_rolling_token_windows`` + ``make_disjoint_window`` (prefix token = BOS, else EOS;
        windows of ``max_length`` predicted tokens, each conditioned on the tokens before it in
        its window), and every window is scored as a (context, continuation) request.
        ``Loglik.total`` adds the windows as lm-eval does (each window's sum in float32), so it
        equals lm-eval's number for the text to float32 rounding. The windows are scored
        ``2 x batch_size`` at a time, so only the results grow with the number of texts (at ``32 x
        batch_size`` the C heap grew to twice lm-eval's working memory at 100 documents of 1,024-token
        windows -- not with glibc's mmap threshold fixed: ``benchmarks/bench_memory_vs_lm_eval.py``)."""
        import torch
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window  # lazy: heavy package

        out = [Loglik([], [], True, 0.0) for _ in texts]
        seqs: list[tuple[Sequence[int], list[int]]] = []
        owner: list[int] = []

        def score() -> None:
            for i, res in zip(owner, self._score_tokens(seqs, operation="loglikelihood_rolling")):
                out[i].logprobs.extend(res.logprobs)
                out[i].tokens.extend(res.tokens)
                out[i].greedy = bool(out[i].greedy and res.greedy)
                # lm-eval sums each window in float32 (``logits.sum()``), then the windows in Python
                out[i].summed += float(torch.tensor(res.logprobs, dtype=torch.float32).sum())
            seqs.clear()
            owner.clear()

        encoded: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if text not in encoded:  # the next texts in batched tokenizer calls (a few at a time: documents are long)
                encoded = dict(self.iter_encoded(texts[i : i + 4 * self.batch_size], chunk=4 * self.batch_size, special=False))
            tokens = encoded[text]
            for ctx, cont in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=tokens, prefix_token=self.prefix_token_id(), max_seq_len=self.max_length, context_len=1)):
                full = (ctx + cont)[-(self.max_length + 1):]
                seqs.append((tuple(full[:-1]), cont))
                owner.append(i)
                if len(seqs) == 2 * self.batch_size:  # windows share (almost) nothing: scored two batches at a time
                    score()
        if seqs:
            score()
        return out

    def _score_tokens(self, seqs: list[tuple[Sequence[int], Sequence[int]]], report: Optional[Callable] = None,
                      operation: str = "loglikelihood") -> list[Loglik]:
        """``seqs``: (input ids, continuation ids); the continuation's log-probs come from the
        last ``len(cont)`` input positions. Every common prefix is computed once (see
        :mod:`.prefix_tree`); at most ``batch_size`` rows per forward call.
        ``report(seq indices, results)`` after each forward call, for the sequences it finished
        (the resume cache commits them). Out of memory: :mod:`.out_of_memory`."""
        if not seqs:
            return []
        score = self._score_tree if self._tree_ok() else self._score_tokens_linear
        return self._retrying(operation, seqs, score, report)

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """:meth:`GreedyGeneration.generate_until`, retried at half the batch after an out-of-memory
        error (:mod:`.out_of_memory`)."""
        hook = self.on_batch

        def run(items: list[GenerationRequest], finished: Callable) -> list[str]:
            self.on_batch = finished
            try:
                return GreedyGeneration.generate_until(self, items)
            finally:
                self.on_batch = hook

        return self._retrying("generate_until", requests, run, hook)

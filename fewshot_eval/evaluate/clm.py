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
from fewshot_eval.evaluate.checks import DTYPES
from fewshot_eval.evaluate.prefix_tree import common_prefix as _common_prefix
from fewshot_eval.evaluate.registry import register_predictor

log = logging.getLogger("fewshot_eval")




@functools.lru_cache(maxsize=1)
def load_model(weights: str, revision: Optional[str], dtype: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer), loaded once per process: the jobs of one model that run in one process
    (the sequential launcher, a combine_tasks SLURM job) share it. Only the last one is kept."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    kwargs = {"revision": revision} if revision else {}
    tok = AutoTokenizer.from_pretrained(weights, **kwargs)
    lm = AutoModelForCausalLM.from_pretrained(weights, dtype=getattr(torch, dtype), **kwargs).to(device).eval()
    log.info("loaded model %s (%s, %s) in %.1fs", weights, dtype, device, time.perf_counter() - t0)
    return lm, tok


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
        self._logits_to_keep = "logits_to_keep" in params
        self._tree: Optional[bool] = None  # prefix-tree scoring works for this model (checked on first use)

    # ------------------------------------------------------------------ loading
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
        lm, tok = load_model(weights, model.get("revision"), dtype, device)
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
        last ``len(cont)`` input positions. Every common prefix is computed once (see
        :mod:`fewshot_eval.evaluate.prefix_tree`); at most ``batch_size`` rows per forward call."""
        if not seqs:
            return []
        if not self._tree_ok():
            return self._score_tokens_linear(seqs)
        return self._score_tree(seqs)

    def _tree_ok(self) -> bool:
        """Whether this model takes tree attention: a plain key/value cache (no sliding windows,
        no recurrent state), an attention that accepts a 4D mask (sdpa, eager), explicit
        positions; checked once against a plain forward pass on a small probe."""
        if self._tree is not None:
            return self._tree
        self._tree = False
        try:
            import inspect

            from transformers import DynamicCache
            from transformers.cache_utils import DynamicLayer

            params = inspect.signature(self.model.forward).parameters
            attn = getattr(self.model.config, "_attn_implementation", None)
            layers = DynamicCache(config=self.model.config).layers
            if attn not in ("sdpa", "eager") or not {"position_ids", "attention_mask"} <= set(params):
                raise ValueError(f"attention {attn!r}")
            if not layers or any(type(layer) is not DynamicLayer for layer in layers):
                raise ValueError("not a plain dynamic cache")
            self._tree = self._probe_tree()
        except Exception as e:  # any model the probe cannot run keeps the plain batches
            log.debug("prefix-tree scoring off for %s: %s", self.name, e)
        if not self._tree:
            log.info("model %s: prefix-tree scoring unavailable; sharing only each batch's common prefix.", self.name)
        return self._tree

    def _probe_tree(self) -> bool:
        """The tree path (with a cached node, packed rows and padding) equals plain forward passes."""
        import torch

        vocab = int(getattr(self.model.config, "vocab_size", 0) or 0)
        if vocab < 16:
            return False
        toks = [(3 * k + 1) % vocab for k in range(12)]
        inputs = [toks[:9], toks[:6] + toks[9:11], toks[:6] + [toks[11]], toks[:3] + toks[6:8]]
        seqs = [(x, x[-2:]) for x in inputs] + [(toks[:9], toks[1:4])]
        got = self._score_tree(seqs, split=4, short=2, pack=4, unit=3)  # cached nodes, recomputed chains, units
        with torch.inference_mode():
            for (inp, cont), res in zip(seqs, got):
                logits = self.model(input_ids=torch.tensor([inp], device=self.device)).logits[0].float()
                lp = torch.log_softmax(logits[len(inp) - len(cont) :], -1)
                want = lp[torch.arange(len(cont)), torch.tensor(cont, device=lp.device)].tolist()
                if max(abs(a - b) for a, b in zip(want, res.logprobs)) > 1e-3:
                    return False
        return True

    def _score_tree(self, seqs: list[tuple[list[int], list[int]]], **row_options: int) -> list[Loglik]:
        """Prefix-tree scoring: the rows of :class:`~fewshot_eval.evaluate.prefix_tree.PrefixTree`
        (``row_options``: its ``rows`` arguments), batched ``batch_size`` at a time in pre-order (a
        cached node's rows right after it, so the key/value caches alive at once stay few: each is
        dropped when its last row ran)."""
        import heapq

        import torch

        from fewshot_eval.evaluate.prefix_tree import PrefixTree

        tree = PrefixTree(seqs)
        rows = tree.rows(**row_options)
        by_past: dict[int, list[int]] = {}
        for r, row in enumerate(rows):
            by_past.setdefault(row.past, []).append(r)
        left = {p: len(rs) for p, rs in by_past.items()}
        kv: dict[int, Optional[list[tuple[Any, Any]]]] = {0: None}  # cached node -> per-layer (keys, values) of its whole path
        past_len = {0: 0}
        lps = [[0.0] * len(cont) for _, cont in seqs]
        greedy = [[True] * len(cont) for _, cont in seqs]
        ready = [(rows[r].order, r) for r in by_past.get(0, [])]
        heapq.heapify(ready)
        with torch.inference_mode():
            while ready:
                batch = self._pick_batch(ready, rows, past_len)
                caches = self._run_rows([rows[r] for r in batch], kv, past_len, seqs, lps, greedy)
                for r, cache in zip(batch, caches):
                    row = rows[r]
                    if cache is not None:
                        kv[row.node], past_len[row.node] = cache, tree.nodes[row.node].end
                        for child in by_past.get(row.node, []):
                            heapq.heappush(ready, (rows[child].order, child))
                    left[row.past] -= 1
                    if not left[row.past] and row.past:
                        del kv[row.past]
        return [Loglik(lp, list(cont), all(g)) for lp, g, (_, cont) in zip(lps, greedy, seqs)]

    def _pick_batch(self, ready: list, rows: list, past_len: dict[int, int]) -> list[int]:
        """Up to ``batch_size`` ready rows, the first in pre-order and those among the next few
        of a similar width and past length (padding stays small)."""
        import heapq

        first = heapq.heappop(ready)[1]
        w0, p0 = rows[first].width, past_len[rows[first].past]
        free = p0 == 0 and rows[first].chain  # batches of such rows run without a mask
        batch, skipped = [first], []
        while ready and len(batch) < self.batch_size and len(skipped) < 4 * self.batch_size:
            item = heapq.heappop(ready)
            row = rows[item[1]]
            p = past_len[row.past]
            if free == (p == 0 and row.chain) and w0 / 2 <= row.width <= 2 * w0 and (p0 + w0) / 2 <= p + row.width <= 2 * (p0 + w0):
                batch.append(item[1])
            else:
                skipped.append(item)
        for item in skipped:
            heapq.heappush(ready, item)
        return batch

    def _run_rows(self, batch: list, kv: dict, past_len: dict[int, int], seqs: list, lps: list[list[float]], greedy: list[list[bool]]) -> list:
        """One forward call over ``batch`` (rows left-padded to one width, pasts left-padded to one
        length, a 4D tree mask); fills ``lps``/``greedy``; returns per row the key/value cache of
        its whole path when it is a cached row, else None."""
        import numpy as np
        import torch

        n, width = len(batch), max(row.width for row in batch)
        plen = max(past_len[row.past] for row in batch)
        free = plen == 0 and all(row.chain for row in batch)  # plain causal rows: right-padded, no mask
        ids = np.zeros((n, width), dtype=np.int64)
        pos = np.zeros((n, width), dtype=np.int64)
        left = [0 if free else width - row.width for row in batch]  # padding before the row's tokens
        for r, row in enumerate(batch):
            ids[r, left[r] : left[r] + row.width], pos[r, left[r] : left[r] + row.width] = row.ids, row.pos
        mask = None
        if not free:
            allowed = np.zeros((n, 1, width, plen + width), dtype=bool)
            diag = np.arange(width)
            allowed[:, 0, diag, plen + diag] = True  # padding attends to itself (no empty softmax)
            for r, row in enumerate(batch):
                a, p = left[r], past_len[row.past]
                allowed[r, 0, a:, plen + a :] = row.allowed
                allowed[r, 0, a:, plen - p : plen] = True
            # an additive float mask: eager attention needs one, and sdpa runs its fused kernel with it (not with a bool mask)
            dtype = self.model.dtype
            mask = torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill_(~torch.from_numpy(allowed).to(self.device), torch.finfo(dtype).min)
        cache = None
        if plen:
            from transformers import DynamicCache

            layers = []
            pasts = {row.past for row in batch}
            if len(pasts) == 1:  # one past for all rows (a context's candidates): no padding, one copy
                layers = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in kv[pasts.pop()]]
            for lay in range(0 if layers else len(next(kv[row.past] for row in batch if past_len[row.past]))):
                keys, values = [], []
                for row in batch:
                    p = past_len[row.past]
                    k, v = kv[row.past][lay] if p else (None, None)
                    if p < plen:
                        ref = next(kv[x.past][lay][0] for x in batch if past_len[x.past])
                        pad = ref.new_zeros((1, ref.shape[1], plen - p, ref.shape[3]))
                        k, v = (torch.cat([pad, k], 2), torch.cat([pad, v], 2)) if p else (pad, pad)
                    keys.append(k)
                    values.append(v)
                layers.append((torch.cat(keys, 0), torch.cat(values, 0)))
            cache = DynamicCache(ddp_cache_data=layers)
        keep_cache = any(row.node >= 0 for row in batch)
        kwargs: dict[str, Any] = {self._cache_arg: cache, "use_cache": cache is not None or keep_cache}
        keep = sorted({left[r] + c for r, row in enumerate(batch) for c, _, _ in row.needs})
        if self._logits_to_keep:  # logits of the columns read only (the probe checked the model takes a tensor)
            kwargs["logits_to_keep"] = torch.tensor(keep or [0], device=self.device)
        out = self.model(input_ids=torch.from_numpy(ids).to(self.device), position_ids=torch.from_numpy(pos).to(self.device), attention_mask=mask, **kwargs)
        logits = out.logits
        index = {c: k for k, c in enumerate(keep)} if self._logits_to_keep else None  # column -> logits index
        rr, cc, tt, who = [], [], [], []
        for r, row in enumerate(batch):
            a = left[r]
            for c, i, j in row.needs:
                rr.append(r)
                cc.append(index[a + c] if index is not None else a + c)
                tt.append(seqs[i][1][j])
                who.append((i, j))
        if rr:
            sel = logits[torch.tensor(rr, device=logits.device), torch.tensor(cc, device=logits.device)].float()
            tgt = torch.tensor(tt, device=sel.device)
            tok_lp = torch.log_softmax(sel, -1).gather(1, tgt[:, None])[:, 0].tolist()
            hit = (sel.argmax(-1) == tgt).tolist()
            for (i, j), v, g in zip(who, tok_lp, hit):
                lps[i][j], greedy[i][j] = v, g
        caches: list = [None] * n
        if keep_cache:
            new = getattr(out, self._cache_arg)
            for r, row in enumerate(batch):
                if row.node < 0:
                    continue
                a, p = left[r], past_len[row.past]
                lo = plen + a  # a cached row is one path in depth order: its columns are consecutive
                assert row.chain and (row.kv_cols == range(row.width)).all()
                caches[r] = [
                    tuple(torch.cat([t[r : r + 1, :, plen - p : plen], t[r : r + 1, :, lo : lo + row.width]], 2) if p else t[r : r + 1, :, lo : lo + row.width]
                          for t in (layer.keys, layer.values))
                    for layer in new.layers
                ]
        return caches

    def _score_tokens_linear(self, seqs: list[tuple[list[int], list[int]]]) -> list[Loglik]:
        """The fallback of :meth:`_score_tokens` for models whose cache or attention cannot take a
        tree mask: sorted batches, each running its requests' common prefix once (reusing the
        previous batch's key/value cache as far as it agrees), then the rest right-padded."""
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
                            try:
                                cache.crop(reuse - len(prev_ids))  # negative: drop that many tokens (all versions)
                            except RuntimeError:  # a sliding window that no longer holds those tokens
                                cache, reuse = None, 0
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

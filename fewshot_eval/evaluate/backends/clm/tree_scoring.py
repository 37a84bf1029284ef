"""Prefix-tree scoring for ``clm``: every common prefix of a call's requests computed once.

The requests' token sequences form a :class:`~fewshot_eval.evaluate.backends.clm.prefix_tree.PrefixTree`;
its rows run ``batch_size`` at a time under a 4D tree mask, reusing the key/value caches of the nodes
they hang from (:meth:`TreeScoring._score_tree`). Used for models whose cache and attention take
such a mask (:meth:`TreeScoring._tree_ok`, checked once on a probe against plain forward passes);
others take :mod:`~fewshot_eval.evaluate.backends.clm.linear_scoring`.

**Memory is bounded by the batch, not by the number of requests.** A cached node's key/value cache
holds the keys and values of its whole path (at most ``L`` tokens, ``L`` the call's longest request
input, itself at most ``max_length``); it lives from its row's batch until the last row below it
has run. Rows run in pre-order: each batch starts with the first ready row (so a prompt's
candidates run right after the prompt). A batch takes a cached row other than its first only while
the tokens of the caches alive -- leaving out those its first row hangs from -- and of the batch's
new caches stay within ``batch_size x L``. So at any moment::

    tokens in key/value caches alive  <=  (batch_size + h) x L

``h`` being the most cached nodes on one path from the root: 1 for shared demonstrations or for
per-example contexts, 2 for contexts cached below shared demonstrations (or below a first
demonstration that several examples drew), rarely more. Why: all rows before the first ready one
(in pre-order) have run, so a cache alive is either a cached ancestor of that row (at most ``h``
caches), or was opened by a batch that counted it within ``batch_size x L`` and has not been an
ancestor of a first ready row since (once it is, it stays one until it is dropped). That is the
key/value memory of ``batch_size + h`` full-length rows, the same for 10 or 10,000 documents, on
every shape (shared or per-example demonstrations, 0-shot, many choices, long continuations,
rolling-perplexity windows). Beside it a forward call holds its own rows -- at most ``batch_size x
max(L, PACK)`` padded tokens: lm-eval's longest batch, or for short requests (0-shot) ``batch_size``
rows of packed candidates (:data:`~fewshot_eval.evaluate.backends.clm.prefix_tree.PACK` tokens, 64:
capped at ``batch_size x L`` they ran in 1.35x the forward calls, ~10% slower at 300 documents; one row
wider than the cap runs alone) --: their pasts,
activations, the tree mask and the logits of the columns read (in chunks:
:meth:`TreeScoring._read_logprobs`). :attr:`TreeScoring.tree_stats` records the last call's peak
against the bound. Generation (:mod:`.greedy_generation`) keeps one cache besides its batch's: the
shared prefix (batch 1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

from fewshot_eval.evaluate.backends.clm.freed_memory import release_freed_memory
from fewshot_eval.evaluate.backends.predictor import Loglik

log = logging.getLogger("fewshot_eval")


@dataclass
class TreeStats:
    """What one :meth:`TreeScoring._score_tree` call held at most: key/value caches alive at once and
    their tokens, against the bound of the module docstring."""

    rows: int = 0
    batches: int = 0  # forward calls
    depth: int = 0  # h: the most cached nodes on one path from the root
    longest: int = 0  # L: the longest request input, in tokens
    bound_tokens: int = 0  # (batch_size + h) x L
    peak_caches: int = 0
    peak_cache_tokens: int = 0
    batch_tokens: int = 0  # the cap on a forward call's padded tokens: batch_size x max(L, PACK)
    peak_batch_tokens: int = 0  # the most padded tokens (rows x widest row) of one forward call


class TreeScoring:
    """Mixin of :class:`~fewshot_eval.evaluate.backends.clm.causal_lm.CausalLMPredictor`: uses its
    ``model``, ``device``, ``batch_size``, ``name`` and forward-call conventions (``_cache_arg``,
    ``_logits_to_keep``); ``_tree`` caches whether the tree path works for the model."""

    model: Any
    device: str
    batch_size: int
    name: str
    _cache_arg: str
    _logits_to_keep: bool
    _tree: Optional[bool]
    tree_stats: Optional[TreeStats] = None  # of the last prefix-tree call (the peak of caches alive at once)

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
        got = self._score_tree(seqs, None, split=4, short=2, pack=4, unit=3)  # cached nodes, recomputed chains, units
        with torch.inference_mode():
            for (inp, cont), res in zip(seqs, got):
                logits = self.model(input_ids=torch.tensor([inp], device=self.device)).logits[0].float()
                lp = torch.log_softmax(logits[len(inp) - len(cont) :], -1)
                want = lp[torch.arange(len(cont)), torch.tensor(cont, device=lp.device)].tolist()
                if max(abs(a - b) for a, b in zip(want, res.logprobs)) > 1e-3:
                    return False
        return True

    def _score_tree(self, seqs: list[tuple[list[int], list[int]]], report: Optional[Callable] = None, **row_options: int) -> list[Loglik]:
        """Prefix-tree scoring: the rows of :class:`~fewshot_eval.evaluate.backends.clm.prefix_tree.PrefixTree`
        (``row_options``: its ``rows`` arguments), batched ``batch_size`` at a time in pre-order, the
        key/value caches alive at once bounded by ``batch_size + h`` (see the module docstring): each
        is dropped when its last row ran."""
        import heapq

        import torch

        from fewshot_eval.evaluate.backends.clm.prefix_tree import PACK, PrefixTree

        tree = PrefixTree(seqs)
        rows: list = tree.rows(**row_options)
        tree.release_needs()
        by_past: dict[int, list[int]] = {}
        depth = {0: 0}  # cached node -> cached nodes on its path (itself included)
        above = {0: 0}  # cached node -> the cached node its row hangs from
        for r, row in enumerate(rows):  # pre-order: a cached row comes before the rows below it
            by_past.setdefault(row.past, []).append(r)
            if row.node >= 0:
                depth[row.node], above[row.node] = depth[row.past] + 1, row.past
        longest = max(len(inp) for inp, _ in seqs)  # no cache holds more tokens (a cache is its node's whole path)
        budget = self.batch_size * longest  # cache tokens alive that a batch's rows besides its first may bring to
        wide = self.batch_size * max(longest, row_options.get("pack", PACK))  # padded tokens of a forward call
        h = max(depth.values())
        stats = self.tree_stats = TreeStats(rows=len(rows), depth=h, longest=longest, bound_tokens=budget + h * longest, batch_tokens=wide)
        left = {p: len(rs) for p, rs in by_past.items()}
        kv: dict[int, Optional[list[tuple[Any, Any]]]] = {0: None}  # cached node -> per-layer (keys, values) of its whole path
        past_len = {0: 0}
        lps = [[0.0] * len(cont) for _, cont in seqs]
        greedy = [True] * len(seqs)  # every continuation token read so far is the argmax
        out: list[Optional[Loglik]] = [None] * len(seqs)  # each result made once, when its last token is read
        ready = [(rows[r].order, r) for r in by_past.get(0, [])]
        heapq.heapify(ready)
        todo = [len(cont) for _, cont in seqs]  # continuation tokens not scored yet, per sequence (each is read once)
        with torch.inference_mode():
            while ready:
                first = heapq.heappop(ready)[1]
                p, alive = rows[first].past, sum(past_len[n] for n in kv)
                while p:  # the caches the first ready row hangs from are not the batch's to count
                    alive, p = alive - past_len[p], above[p]
                batch = self._pick_batch(first, ready, rows, past_len, tree, alive, budget, tokens=wide)
                caches = self._run_rows([tree.arrays(rows[r]) for r in batch], kv, past_len, seqs, lps, greedy)
                stats.batches += 1
                stats.peak_batch_tokens = max(stats.peak_batch_tokens, len(batch) * max(rows[r].width for r in batch))
                done = []
                for r in batch:
                    for _, i, _, k in rows[r].needs:
                        todo[i] -= k
                        if not todo[i]:
                            done.append(i)
                            out[i] = self._loglik(lps[i], seqs[i][1], greedy[i])
                if done and report is not None:
                    report(done, [out[i] for i in done])
                for r, cache in zip(batch, caches):
                    row = rows[r]
                    if cache is not None:
                        kv[row.node], past_len[row.node] = cache, tree.nodes[row.node].end
                        for child in by_past.get(row.node, []):
                            heapq.heappush(ready, (rows[child].order, child))
                stats.peak_caches = max(stats.peak_caches, len(kv) - 1)
                stats.peak_cache_tokens = max(stats.peak_cache_tokens, sum(past_len[n] for n in kv))
                for r in batch:
                    past = rows[r].past
                    left[past] -= 1
                    if not left[past] and past:
                        del kv[past]
                    rows[r] = None  # a row that ran is not read again: its segments and needs go as the results come
                release_freed_memory(self.device)  # caches freed by this batch: their pages back to the system (CPU)
        return [x if x is not None else self._loglik(lp, cont, g) for x, lp, g, (_, cont) in zip(out, lps, greedy, seqs)]

    @staticmethod
    def _loglik(logprobs: list[float], cont: Any, greedy: bool) -> Loglik:
        """A result; its ``tokens`` the request's continuation list itself when it is one (no copy per request)."""
        return Loglik(logprobs, cont if type(cont) is list else list(cont), greedy)

    def _pick_batch(self, first: int, ready: list, rows: list, past_len: dict[int, int], tree: Any, alive: int, budget: int,
                    tokens: int) -> list[int]:
        """Up to ``batch_size`` rows: ``first`` (the first ready row in pre-order), and those among the next
        few ready ones of a similar width and past length (padding stays small), while the batch's padded
        tokens (rows x widest row) stay within ``tokens`` (packed rows are wide: without a cap a forward call
        of 0-shot documents held three times lm-eval's tokens); a cached row besides ``first`` only while the tokens of the caches
        alive that ``first`` does not hang from (``alive``) and of the batch's new ones stay within ``budget``."""
        import heapq

        w0, p0 = rows[first].width, past_len[rows[first].past]
        free = p0 == 0 and rows[first].chain  # batches of such rows run without a mask
        opened = alive + (tree.nodes[rows[first].node].end if rows[first].node >= 0 else 0)
        batch, skipped, wide = [first], [], w0
        while ready and len(batch) < self.batch_size and len(skipped) < 4 * self.batch_size and (len(batch) + 1) * wide <= tokens:
            item = heapq.heappop(ready)
            row = rows[item[1]]
            p = past_len[row.past]
            if (free == (p == 0 and row.chain) and w0 / 2 <= row.width <= 2 * w0 and (p0 + w0) / 2 <= p + row.width <= 2 * (p0 + w0)
                    and (len(batch) + 1) * row.width <= tokens
                    and (row.node < 0 or opened + tree.nodes[row.node].end <= budget)):
                batch.append(item[1])
                wide = max(wide, row.width)
                opened += tree.nodes[row.node].end if row.node >= 0 else 0
            else:
                skipped.append(item)
        for item in skipped:
            heapq.heappush(ready, item)
        return batch

    def _run_rows(self, batch: list, kv: dict, past_len: dict[int, int], seqs: list, lps: list[list[float]], greedy: list[bool]) -> list:
        """One forward call over ``batch`` (the rows' :class:`~fewshot_eval.evaluate.backends.clm.prefix_tree.RowArrays`,
        left-padded to one width, pasts left-padded to one length, a 4D tree mask); fills
        ``lps``/``greedy``; returns per row the key/value cache of its whole path when it is a
        cached row, else None."""
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
            if free and row.width < width and row.pos[-1] == row.width - 1:
                # padding continues the positions: positions that restart read as packed sequences,
                # for which transformers builds a dense mask instead of sdpa's causal kernel
                pos[r, row.width :] = np.arange(row.width, width)
        mask = None
        if not free:
            allowed = np.zeros((n, 1, width, plen + width), dtype=bool)
            diag = np.arange(width)
            allowed[:, 0, diag, plen + diag] = True  # padding attends to itself (no empty softmax)
            for r, row in enumerate(batch):
                a, p = left[r], past_len[row.past]
                allowed[r, 0, a:, plen + a :] = row.mask()
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
        runs = [(r, left[r] + c, i, j, k) for r, row in enumerate(batch) for c, i, j, k in row.needs]  # (row, first column, request, j, tokens)
        run = np.asarray(runs, dtype=np.int64).reshape(-1, 5)
        lens = run[:, 4]
        which = np.repeat(run[:, 0], lens)  # per token read: its row and column
        cols = np.repeat(run[:, 1] - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
        keep = np.unique(cols)
        if self._logits_to_keep:  # logits of the columns read only (the probe checked the model takes a tensor)
            kwargs["logits_to_keep"] = 0 if len(keep) == width else torch.from_numpy(keep if len(keep) else np.zeros(1, np.int64)).to(self.device)  # 0: all
        out = self.model(input_ids=torch.from_numpy(ids).to(self.device), position_ids=torch.from_numpy(pos).to(self.device), attention_mask=mask, **kwargs)
        logits = out.logits
        if runs:
            if self._logits_to_keep and not isinstance(kwargs["logits_to_keep"], int):
                cols = np.searchsorted(keep, cols)  # column -> logits index
            tt: list[int] = []
            for _, _, i, j, k in runs:
                tt.extend(seqs[i][1][j : j + k])
            tok_lp, hit = self._read_logprobs(logits, which, cols, tt)
            a = 0
            for _, _, i, j, k in runs:
                lps[i][j : j + k] = tok_lp[a : a + k]
                greedy[i] = greedy[i] and all(hit[a : a + k])
                a += k
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

    def _read_logprobs(self, logits: Any, rows: Any, cols: Any, targets: list[int], chunk_bytes: int = 1 << 26) -> tuple[list[float], list[bool]]:
        """Log-prob of ``targets[k]`` at ``logits[rows[k], cols[k]]`` and whether it is the argmax,
        a chunk of positions at a time (at most ``chunk_bytes`` of float32 logits copied at once:
        a rolling-perplexity batch reads every position, ``batch_size x max_length x vocab``)."""
        import torch

        step = max(1, chunk_bytes // (4 * logits.shape[-1]))
        rows_t, cols_t = torch.from_numpy(rows).to(logits.device), torch.from_numpy(cols).to(logits.device)
        tgt = torch.tensor(targets, device=logits.device)
        tok_lp: list[float] = []
        hit: list[bool] = []
        for a in range(0, len(targets), step):
            sel = logits[rows_t[a : a + step], cols_t[a : a + step]].float()
            # log_softmax + gather, fused (no (tokens x vocab) log-prob tensor is written; same numbers)
            tok_lp += torch.nn.functional.cross_entropy(sel, tgt[a : a + step], reduction="none").neg_().tolist()
            hit += (sel.argmax(-1) == tgt[a : a + step]).tolist()
        return tok_lp, hit

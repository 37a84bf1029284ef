"""Linear scoring for ``clm``: the fallback for models whose cache or attention cannot take a tree mask.

Requests sorted by their token ids and cut into batches of ``batch_size``; each batch runs the
prefix its requests share once (batch size 1), reusing the key/value cache of the previous batch's
prefix as far as they agree, then all its requests' remaining tokens together (right-padded: under
causal attention no mask is needed).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional

from fewshot_eval.evaluate.backends.clm.prefix_tree import common_prefix as _common_prefix
from fewshot_eval.evaluate.backends.predictor import Loglik


class LinearScoring:
    """Mixin of :class:`~fewshot_eval.evaluate.backends.clm.causal_lm.CausalLMPredictor`: uses its
    ``model``, ``device``, ``batch_size`` and ``_cache_arg``."""

    model: Any
    device: str
    batch_size: int
    _cache_arg: str

    def _score_tokens_linear(self, seqs: list[tuple[list[int], list[int]]], report: Optional[Callable] = None) -> list[Loglik]:
        """The fallback of ``CausalLMPredictor._score_tokens`` for models whose cache or attention cannot take a
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
                if report is not None:
                    report(idx, [out[i] for i in idx])
        return out  # type: ignore[return-value]

    def _prefix_cache(self, ids: list[int], cache: Any) -> Any:
        import torch

        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=x, **{self._cache_arg: cache}, use_cache=True)
        return getattr(out, self._cache_arg)

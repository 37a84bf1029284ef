"""Out of memory is never silent for ``clm``: one retry at half the batch, then one line saying what to set.

:meth:`OutOfMemoryRetry._retrying` runs an operation (``loglikelihood``, ``loglikelihood_rolling``,
``generate_until``) over its items. When the model raises ``torch.OutOfMemoryError`` (CUDA out of
memory) it drops what the failed call held, halves ``batch_size`` -- and with it the key/value cache
budget of :mod:`.tree_scoring` (``batch_size x L`` tokens, ``L`` the longest input) -- adds a note
to ``notes`` (the trial's ``predictor_notes`` and warnings) and runs the items not finished yet
again; the rest of the job keeps the smaller batch. A second out-of-memory error in the job, or
one at ``batch_size=1``, fails the job with one line naming ``batch_size``, the cache budget and what
to set.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

log = logging.getLogger("fewshot_eval")


class OutOfMemoryRetry:
    """Mixin of :class:`~fewshot_eval.evaluate.backends.clm.causal_lm.CausalLMPredictor`: uses its
    ``batch_size``, ``max_length``, ``device`` and ``notes``."""

    batch_size: int
    max_length: int
    device: str
    notes: list[str]
    _halved_from: Optional[int] = None  # the batch size before the job's one retry at half of it

    def _retrying(self, operation: str, items: Sequence[Any], run: Callable[[list, Callable], list],
                  report: Optional[Callable] = None) -> list:
        """``run(items, finished)`` (it calls ``finished(indices into items, results)`` for each
        finished batch); after a CUDA out-of-memory error, once per job, again at half the batch on
        the items not finished. ``report`` (the resume cache's) hears of every finished batch, as
        indices into ``items``."""
        import torch

        done: dict[int, Any] = {}
        todo = list(range(len(items)))
        while True:
            def finished(idx: list[int], results: list, todo: list[int] = todo) -> None:
                idx = [todo[i] for i in idx]
                done.update(zip(idx, results))
                if report is not None:
                    report(idx, results)

            try:
                out = run([items[i] for i in todo], finished)
            except torch.OutOfMemoryError as e:
                if self._halved_from is not None or self.batch_size == 1:
                    raise torch.OutOfMemoryError(self._out_of_memory_line(operation)) from e
            else:
                done.update(zip(todo, out))
                return [done[i] for i in range(len(items))]
            # outside the except block: the failed call's frames (and tensors) are gone now
            self._release_memory()
            self._halved_from, self.batch_size = self.batch_size, self.batch_size // 2
            note = (f"CUDA out of memory in {operation} at batch_size={self._halved_from}: retried at batch_size={self.batch_size} "
                    f"(key/value cache budget {self.batch_size} x max_length={self.max_length} tokens), kept for the rest of the job")
            self.notes.append(note)
            log.warning(note)
            todo = [i for i in todo if i not in done]

    def _out_of_memory_line(self, operation: str) -> str:
        """The one-line error of an out-of-memory that no retry is left for."""
        after = f" (after a retry at half of batch_size={self._halved_from})" if self._halved_from is not None else ""
        budget = f"key/value cache budget batch_size x max_length = {self.batch_size} x {self.max_length} tokens"
        fix = (f"set a smaller batch_size (model.eval.batch_size={self.batch_size // 2}) or max_length" if self.batch_size > 1
               else "set a smaller max_length")
        return (f"CUDA out of memory in clm {operation} at batch_size={self.batch_size}{after}; {budget}: {fix}, "
                f"or spread the model over more GPUs (model.parallel.device_map=auto).")

    def _release_memory(self) -> None:
        """Give back what a failed call held (its tensors are unreachable once its frames are gone)."""
        import gc

        import torch

        self._gen_prefix = ((), None)  # generation's shared-prefix cache
        gc.collect()
        if str(self.device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()

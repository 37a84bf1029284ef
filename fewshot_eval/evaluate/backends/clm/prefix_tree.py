"""Prefix tree over the token sequences of a batch of log-likelihood requests: which tokens to compute.

Requests of a few-shot evaluation share long prefixes: the trial's demonstrations, then each
example's context across its candidates (and calibration variants). The distinct input
sequences form a radix tree; every token of the tree is computed once, and each request reads
its continuation's log-probs at the positions of its own path. Example, two examples with two
candidates each (``D`` shared demonstrations, ``X``/``Y`` the examples' contexts)::

    D ─┬─ X ─┬─ a        naive: 4 x |D X a|   tree: |D| + |X| + |Y| + |a| + |b| + |c| + |d|
       │     └─ b
       └─ Y ─┬─ c
             └─ d

The tree is cut into *rows* (one row of a model forward call): a branching node with a large
subtree is *cached* (its segment is a row of its own and its key/value cache is kept for its
children: an example's context, the shared demonstrations); the small subtrees below cached
nodes (an example's candidates) are packed, whole, into rows (siblings share a row). A row's
tokens attend to their cached ancestor (the row's *past*) and to their own ancestors in the
row: a tree attention mask. Tokens whose logits are needed come last in the row, so the
model's ``logits_to_keep`` can skip the others. A row that is one path and has no past (an
example's context, a request sharing nothing) runs without a mask, as a plain causal batch.

Pure Python and numpy: :mod:`fewshot_eval.evaluate.backends.clm` runs the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

PACK = 64  # tokens of sibling units that share a row below a cached node (at least): ``PrefixTree.rows``' ``pack``


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token lists (slice comparisons run in C)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(slots=True)  # no per-object __dict__: a call's tree holds a few nodes per request
class Node:
    """Tokens ``inputs[seq][start:end]`` (depths ``start..end-1``); node 0 is the empty root."""

    start: int
    end: int
    parent: int
    seq: int
    children: list[int] = field(default_factory=list)
    needs: list[tuple[int, int, int, int]] = field(default_factory=list)  # runs: (offset in node, request, continuation index, tokens)
    size: int = 0  # tokens in the subtree
    order: int = 0  # pre-order index


@dataclass(slots=True)
class Row:
    """One row of a forward call: its segments ``segs`` as (node, offset in the row, row index of the
    parent's last token or -1), ``needs`` as runs (first column, request, first continuation index,
    tokens: consecutive columns), in the row's depth order. The arrays a forward call takes are
    built when the row runs (:meth:`PrefixTree.arrays`), so the rows of a whole call stay small."""

    past: int  # the cached node whose key/value cache precedes the row (0: none)
    node: int  # cached row: the node it computes; else -1
    order: int  # pre-order index of its first own unit (not of a recomputed chain that other rows share)
    width: int = 0
    segs: list[tuple[int, int, int]] = field(default_factory=list)
    needs: list[tuple[int, int, int, int]] = field(default_factory=list)
    chain: bool = False  # one path, in depth order (needs no mask when it has no past)


@dataclass
class RowArrays:
    """A row as a forward call takes it: ``ids``/``pos`` (position = depth), ``allowed`` (tree mask
    over the row, ``allowed[q, k]``: query ``q`` may attend to key ``k``; None for a chain: causal),
    ``needs`` with the row's final columns (needed tokens last, unless a chain), and for a cached row
    the columns of its segment in depth order (``kv_cols``)."""

    row: Row
    ids: Any
    pos: Any
    allowed: Any
    needs: list[tuple[int, int, int, int]]
    kv_cols: Any = None

    def __getattr__(self, name: str) -> Any:  # past, node, order, width, chain: the row's
        if name == "row":
            raise AttributeError(name)
        return getattr(self.row, name)

    def mask(self) -> Any:
        """``allowed``, built on demand for a chain (causal)."""
        import numpy as np

        return self.allowed if self.allowed is not None else np.tri(self.width, dtype=bool)


class PrefixTree:
    """The radix tree of ``seqs`` = [(input ids, continuation ids)]: request ``i`` needs the
    log-probs of ``cont`` read at its input's last ``len(cont)`` positions."""

    def __init__(self, seqs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
        self.inputs: list[tuple[int, ...]] = []
        index: dict[tuple[int, ...], int] = {}
        seq_of = []
        for inp, _ in seqs:
            key = tuple(inp)
            if key not in index:
                index[key] = len(self.inputs)
                self.inputs.append(key)
            seq_of.append(index[key])
        self.nodes: list[Node] = [Node(0, 0, -1, -1)]
        end_node = self._build()
        for i, (inp, cont) in enumerate(seqs):
            first = len(inp) - len(cont)
            n = end_node[seq_of[i]]
            while n > 0 and self.nodes[n].end > first:
                node = self.nodes[n]
                lo, hi = max(node.start, first), min(node.end, len(inp))
                if hi > lo:  # one run per request and node, not a record per token (perplexity reads every token)
                    node.needs.append((lo - node.start, i, lo - first, hi - lo))
                n = node.parent
        self._measure()

    def _build(self) -> list[int]:
        nodes, inputs = self.nodes, self.inputs
        end_node = [0] * len(inputs)
        stack = [0]
        prev = None
        for k in sorted(range(len(inputs)), key=inputs.__getitem__):
            s = inputs[k]
            shared = common_prefix(inputs[prev], s) if prev is not None else 0
            while stack[-1] != 0 and nodes[stack[-1]].start >= shared:
                stack.pop()
            top = stack[-1]
            if nodes[top].end > shared:  # split: the shared part becomes a node of its own
                t = nodes[top]
                mid = len(nodes)
                nodes.append(Node(t.start, shared, t.parent, t.seq, children=[top]))
                siblings = nodes[t.parent].children
                siblings[siblings.index(top)] = mid
                t.parent, t.start = mid, shared
                stack[-1] = mid
            # distinct sorted inputs: s is never a prefix of the previous one, so len(s) > shared
            new = len(nodes)
            nodes.append(Node(shared, len(s), stack[-1], k))
            nodes[stack[-1]].children.append(new)
            stack.append(new)
            end_node[k] = new
            prev = k
        return end_node

    def _measure(self) -> None:
        order, todo = [], [0]
        while todo:
            n = todo.pop()
            order.append(n)
            todo.extend(reversed(self.nodes[n].children))
        for i, n in enumerate(order):
            self.nodes[n].order = i
        for n in reversed(order):
            node = self.nodes[n]
            node.size = node.end - node.start + sum(self.nodes[c].size for c in node.children)

    def tokens(self, n: int) -> tuple[int, ...]:
        node = self.nodes[n]
        return self.inputs[node.seq][node.start : node.end]

    @property
    def n_tokens(self) -> int:
        """Tokens the tree computes (each shared prefix once)."""
        return self.nodes[0].size

    # ------------------------------------------------------------------ rows
    def rows(self, split: int = 64, short: int = 192, pack: int = PACK, unit: int = 128) -> list[Row]:
        """The rows of the whole tree, in pre-order (see the module docstring).

        A node is *cached* (its segment is a row; its key/value cache is kept for its children)
        when it branches, its subtree holds more than ``split`` tokens, and the tokens it would
        otherwise recompute (its *chain*: from the nearest cached ancestor to its end) are as
        many as precede them and save at least ``short`` tokens (chain x (children - 1)); a
        shared segment that saves less is recomputed in each row below it: cheaper than one
        more forward call, or than making every row below attend to a cache through a mask.
        A subtree is computed whole in one row (a *unit*) when it holds at most ``unit`` tokens
        and nothing below it is cached (a dense tree mask costs its width squared: wide units
        waste attention); else its segment is recomputed in each row below it. Below a cached node,
        sibling units share a row while it holds at most ``max(pack, depth / 2)`` tokens.
        """
        nodes = self.nodes
        cached = [True] + [False] * (len(nodes) - 1)
        chain = [0] * len(nodes)  # tokens from the nearest cached ancestor to the node's end (recomputed if not cached)
        for n in sorted(range(1, len(nodes)), key=lambda n: nodes[n].order):
            node = nodes[n]
            chain[n] = node.end - node.start + (0 if cached[node.parent] else chain[node.parent])
            cached[n] = (bool(node.children) and node.size > split and chain[n] >= node.end - chain[n]
                         and chain[n] * (len(node.children) - 1) >= short)
        big = [bool(node.children) and node.size > unit for node in nodes]  # too big to be one unit
        below = [False] * len(nodes)  # a cached node (or a subtree too big for a unit) somewhere below
        for n in sorted(range(len(nodes)), key=lambda n: -nodes[n].order):
            below[n] = any(cached[c] or below[c] or big[c] for c in nodes[n].children)
        out: list[Row] = []
        done: set[int] = set()  # nodes whose needed log-probs a row already reads

        def visit(past: int, chain: list[int], n: int) -> None:
            limit = max(pack, nodes[past].end // 2)
            group: list[int] = []
            width = 0
            for ch in nodes[n].children:
                if cached[ch]:
                    out.append(self._layout(past, chain, [ch], done, cached_node=ch))
                    visit(ch, [], ch)
                elif below[ch] or big[ch]:  # recomputed in each row below
                    visit(past, chain + [ch], ch)
                else:
                    size = nodes[ch].size
                    if group and width + size > limit:
                        out.append(self._layout(past, chain, group, done))
                        group, width = [], 0
                    group.append(ch)
                    width += size
            if group:
                out.append(self._layout(past, chain, group, done))

        visit(0, [], 0)
        visit = None  # type: ignore[assignment]  # a recursive closure is a reference cycle holding the whole tree until a full gc
        out.sort(key=lambda r: r.order)
        return out

    def release_needs(self) -> None:
        """Forget which tokens each node's requests read, once the rows that read them are built
        (they hold their own ``needs``): a scoring call's tree then keeps what :meth:`arrays` takes."""
        for node in self.nodes:
            node.needs = []

    def _layout(self, past: int, chain: list[int], units: list[int], done: set[int], cached_node: int = -1) -> Row:
        """One row: the ``chain`` segments (not cached, between ``past`` and the units), then the
        ``units`` (whole subtrees, or the segment of ``cached_node``)."""
        segs: list[tuple[int, int, int]] = []  # (node, offset in row, row index of the parent's last token or -1)
        width = 0
        for n in chain:
            segs.append((n, width, width - 1))
            width += self.nodes[n].end - self.nodes[n].start
        top = width - 1
        todo = [(u, top) for u in reversed(units)]
        while todo:
            n, parent_last = todo.pop()
            node = self.nodes[n]
            segs.append((n, width, parent_last))
            width += node.end - node.start
            if cached_node < 0:
                todo.extend((ch, width - 1) for ch in reversed(node.children))
        needs = []
        for n, o, _ in segs:
            if n not in done:  # a node's log-probs are read by the first row that holds it
                done.add(n)
                needs.extend((o + off, i, j, k) for off, i, j, k in self.nodes[n].needs)
        return Row(past=past, node=cached_node, order=self.nodes[units[0]].order, width=width, segs=segs, needs=needs,
                   chain=all(p == o - 1 for _, o, p in segs))

    def arrays(self, row: Row) -> RowArrays:
        """The arrays of ``row`` for a forward call (built when it runs, dropped after)."""
        import numpy as np

        width = row.width
        ids = np.empty(width, dtype=np.int64)
        pos = np.empty(width, dtype=np.int64)
        allowed = None if row.chain else np.zeros((width, width), dtype=bool)  # a chain's mask is causal: RowArrays.mask()
        for n, o, p in row.segs:
            node = self.nodes[n]
            length = node.end - node.start
            ids[o : o + length] = self.tokens(n)
            pos[o : o + length] = np.arange(node.start, node.end)
            if allowed is not None:
                if p >= 0:
                    allowed[o : o + length, :o] = allowed[p, :o]
                allowed[o : o + length, o : o + length] = np.tri(length, dtype=bool)
        if row.chain:  # depth order: rows of a batch without a mask must stay causal
            return RowArrays(row, ids, pos, None, list(row.needs), np.arange(width) if row.node >= 0 else None)
        # needed tokens last (their relative order kept: a run's columns stay consecutive): logits for the row's end only
        needed = np.zeros(width, dtype=bool)
        for c, _, _, k in row.needs:
            needed[c : c + k] = True
        perm = np.concatenate([np.flatnonzero(~needed), np.flatnonzero(needed)])
        where = np.empty(width, dtype=np.int64)
        where[perm] = np.arange(width)
        return RowArrays(row, ids[perm], pos[perm], allowed[np.ix_(perm, perm)], [(int(where[c]), i, j, k) for c, i, j, k in row.needs],
                         where if row.node >= 0 else None)

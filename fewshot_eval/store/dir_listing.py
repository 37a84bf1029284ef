"""What one plan sees of the result tree: each directory listed at most once.

A plan of 100,000 jobs would otherwise ask the filesystem for every file of every job (does
``results.json`` exist? ``failure.json``? ``submitted.json``? the result dir itself?). A
:class:`DirListing` lists a result dir's parent once, so a result dir that is not there costs no
call at all, and a result dir that is there is listed once for all the questions about it. It is a
snapshot for one plan: a launcher that re-checks a job under its lock reads the disk itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

_UNLISTED = object()


class DirListing:
    """``names(dir)``: the entries of ``dir`` (None: it is not there), read once; its parents up to
    ``up`` levels are listed first, so that the dirs of a parent that does not hold them are never asked."""

    def __init__(self, up: int = 2) -> None:
        self.up = up
        self._names: dict[str, Optional[frozenset[str]]] = {}

    def names(self, path: Union[str, Path], up: Optional[int] = None) -> Optional[frozenset[str]]:
        key = os.fspath(path)
        got = self._names.get(key, _UNLISTED)
        if got is not _UNLISTED:
            return got  # type: ignore[return-value]
        parent, _, name = key.rpartition(os.sep)
        up = self.up if up is None else up
        if parent and name and up > 0:
            above = self.names(parent, up - 1)
            if above is None or name not in above:
                self._names[key] = None
                return None
        try:
            names: Optional[frozenset[str]] = frozenset(os.listdir(key))
        except OSError:  # not there, not a dir, not readable: as if missing (its files are then read as missing too)
            names = None
        self._names[key] = names
        return names

    def has(self, directory: Union[str, Path], name: str) -> bool:
        """Is ``name`` an entry of ``directory``?"""
        names = self.names(directory)
        return names is not None and name in names

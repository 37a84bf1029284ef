"""Scored requests on disk, one SQLite file per trial: a killed job loses at most the batch in flight.

    <result_dir>/score_cache/trial<t>.sqlite      table scores(key TEXT PRIMARY KEY, value TEXT)

``key`` is a digest of everything that changes a score (see ``evaluate.resume``), ``value`` the
JSON of the result after a checksum of key and JSON (``<16 hex> <json>``): a row whose checksum does
not match (a damaged or edited file, a row of another key) is dropped and rescored, the file named in
one warning, never a failed job. The evaluator writes one transaction per scored batch (WAL journal,
``synchronous=NORMAL``: a committed batch survives the process being killed, SIGKILL included).
Exclusive locking mode: SQLite then needs no shared memory, so the file works on network file
systems; one process writes a trial at a time (``store.locks.claim_trials``). The directory is
removed when the result completes, unless ``keep_score_cache=true``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Iterable, Optional, Sequence

from fewshot_eval.faults import fault_point
from fewshot_eval.store import layout
from fewshot_eval.store.atomic import dir_mode

log = logging.getLogger("fewshot_eval")

_CHUNK = 500  # keys per SELECT (SQLite's bound-variable limit is 999 on old builds)


def score_cache_dir(result_dir: Path) -> Path:
    return result_dir / layout.SCORE_CACHE


def score_cache_file(result_dir: Path, trial: int) -> Path:
    return score_cache_dir(result_dir) / f"{layout.trial_dir(result_dir, trial).name}.sqlite"


class ScoreCache:
    """One trial's cache file; a context manager that closes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode())
        self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: no -shm file, fine on NFS
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._warned = False

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The stored values of those ``keys`` that are stored whole (rows failing their checksum are dropped)."""
        out: dict[str, str] = {}
        bad: list[str] = []
        distinct = list(dict.fromkeys(keys))
        for i in range(0, len(distinct), _CHUNK):
            part = distinct[i : i + _CHUNK]
            rows = self._db.execute(f"SELECT key, value FROM scores WHERE key IN ({','.join('?' * len(part))})", part)
            for key, value in rows.fetchall():
                payload = _unsealed(key, value)
                if payload is None:
                    bad.append(key)
                else:
                    out[key] = payload
        if bad:
            self.drop(bad, "fail their checksum")
        return out

    def drop(self, keys: Sequence[str], why: str) -> None:
        """Delete the rows of ``keys`` (damaged: ``why``); they are scored again. One warning per file."""
        for i in range(0, len(keys), _CHUNK):
            part = list(keys[i : i + _CHUNK])
            self._db.execute(f"DELETE FROM scores WHERE key IN ({','.join('?' * len(part))})", part)
        if not self._warned:
            self._warned = True
            log.warning("score cache %s: %d rows %s (a damaged file?): dropped, scored again", self.path, len(keys), why)

    def put_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Store ``(key, value)`` pairs in one transaction (one scored batch)."""
        items = [(k, _sealed(k, v)) for k, v in items]
        if not items:
            return
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR REPLACE INTO scores (key, value) VALUES (?, ?)", items)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        fault_point("after-commit")  # FEWSHOT_FAULT=kill-after-commit:<n> (tests)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, et: Optional[type], ev: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()


def _checksum(key: str, value: str) -> str:
    return hashlib.sha256(f"{key}\0{value}".encode()).hexdigest()[:16]


def _sealed(key: str, value: str) -> str:
    return f"{_checksum(key, value)} {value}"


def _unsealed(key: str, stored: object) -> str | None:
    """The value of a stored row, or None when its checksum does not match (or it is not text)."""
    if not isinstance(stored, str) or len(stored) < 17 or stored[16] != " ":
        return None
    value = stored[17:]
    return value if _checksum(key, value) == stored[:16] else None


def remove_score_cache(result_dir: Path) -> None:
    """Delete a result's score cache (all trials); nothing if there is none."""
    shutil.rmtree(score_cache_dir(result_dir), ignore_errors=True)

"""Atomic, durable file writes that follow the process umask.

A write goes to a temp file ``.<name>.<random>.tmp`` in the target's directory, is fsynced, renamed
over the target, and the directory is fsynced: readers see the old file or the whole new one, and
after a crash the file is either there whole or not at all (inside :func:`batched_fsync`, a job's writes are
fsynced together at its end; inside :func:`group_commit`, a local sweep's at most every second). ``durable=False`` skips the fsyncs (readers
still see a whole file): for records whose durable copy is elsewhere, such as the per-result SLURM
markers derived from a pool's submission record, where an fsync per job would cost milliseconds each
on a network filesystem. Files get ``0o666 & ~umask`` and
directories ``0o777 & ~umask`` (``tempfile.mkstemp`` alone would give 0600, so colleagues sharing
an output dir through their Unix group could not read finished results). Temp files of writes that
were killed are removed later by :func:`clean_temp_files`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

# The temp files this module creates: mkstemp's ".<name>.<8 random chars>.tmp".
TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
# A temp file untouched for this long belongs to a write that was killed (a live write renames
# its temp file within seconds of its last byte).
TEMP_MAX_AGE_S = 15 * 60

_umask_lock = threading.Lock()


@lru_cache(maxsize=None)
def process_umask() -> int:
    """The process umask, read once (``os.umask`` can only be read by setting it, process-wide)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:  # Linux >= 4.7: read-only
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # for the instant in between, files other threads create are private, never more open
        old = os.umask(0o077)
        os.umask(old)
    return old


def file_mode() -> int:
    return 0o666 & ~process_umask()


def dir_mode() -> int:
    return 0o777 & ~process_umask()


class _Deferred(threading.local):
    files: Optional[dict[str, None]] = None  # files written, in write order (None: no batch open in this thread)
    dirs: Optional[dict[str, None]] = None
    every_s: Optional[float] = None  # inside group_commit: flush at most this often
    flushed_at: float = 0.0


_deferred = _Deferred()


@contextmanager
def batched_fsync() -> Iterator[None]:
    """Durable writes inside (in this thread) skip their own fsyncs; on leaving, each file written and then
    each directory touched is fsynced once. Every write is still atomic (temp file + rename), so a killed
    process (kill -9) loses nothing: what it wrote is in the kernel's page cache. What the batch changes is
    when the disk has it: at the end of the batch (for a job: before it reports finished) instead of after
    each file -- on ext4 one journal commit instead of one per file. After a power cut inside a batch, a
    file may come back short or empty: a result's files are recorded with their sizes, so the planner then
    sees the trial or result as incomplete and recomputes it. Nested batches flush with the outermost
    (inside :func:`group_commit`, at most every ``every_s``)."""
    if _deferred.files is not None:
        try:
            yield
        finally:
            if _deferred.every_s is not None:
                fsync_pending()
        return
    with _batch(None):
        yield


@contextmanager
def group_commit(every_s: float) -> Iterator[None]:
    """Jobs run one after another in this thread (the ``local`` launcher) share their fsyncs: what they
    write is made durable at most every ``every_s`` seconds and on leaving, not at the end of each job.
    Atomicity and kill -9 are as in :func:`batched_fsync`; a power cut can cost the jobs of the last
    ``every_s`` seconds, whose files the planner then finds short or missing and recomputes.
    ``every_s <= 0``: each job flushes at its end, as without a group."""
    if _deferred.files is not None or every_s <= 0:
        yield
        return
    with _batch(every_s):
        yield


@contextmanager
def _batch(every_s: Optional[float]) -> Iterator[None]:
    """This thread's batch, open inside: writes note their fsyncs; on leaving, all are done (:func:`_flush`)."""
    _deferred.files, _deferred.dirs = {}, {}
    _deferred.every_s, _deferred.flushed_at = every_s, time.monotonic()
    try:
        yield
    finally:
        try:
            _flush()
        finally:
            _deferred.files = _deferred.dirs = _deferred.every_s = None


def fsync_pending() -> None:
    """Inside :func:`batched_fsync`: make what the batch wrote so far durable now (files, then their
    directories); the batch goes on. Inside :func:`group_commit`: only when ``every_s`` has passed since
    the last flush. Outside: nothing to do (every write was fsynced)."""
    if _deferred.every_s is not None and time.monotonic() - _deferred.flushed_at < _deferred.every_s:
        return
    _flush()


def _flush() -> None:
    files, dirs = _deferred.files, _deferred.dirs
    if files is None or dirs is None:
        return
    _deferred.files, _deferred.dirs = {}, {}
    _deferred.flushed_at = time.monotonic()
    for f in files:
        _fsync_path(f)
    for d in dirs:
        fsync_dir(Path(d))


def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # replaced or moved aside meanwhile: what is there now was made durable by its own writer
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_later(file: Optional[str], directory: Path) -> bool:
    """Inside :func:`batched_fsync`: note what to fsync at its end (True); else False (fsync now)."""
    if _deferred.files is None or _deferred.dirs is None:
        return False
    if file is not None:
        _deferred.files[file] = None
    _deferred.dirs[os.fspath(directory)] = None
    return True


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable; a no-op where the filesystem refuses."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.EROFS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM):
            raise
    finally:
        os.close(fd)


def ensure_dir(path: Path, durable: bool = True) -> None:
    """``mkdir -p`` with the umask's permissions; the parent of each new directory is fsynced (``durable``)."""
    if path.is_dir():
        return
    if not durable:
        path.mkdir(mode=0o777, parents=True, exist_ok=True)
        return
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o777)  # the kernel applies the umask
        except FileExistsError:
            if not d.is_dir():
                raise
            continue
        if not _durable_later(None, d.parent):
            fsync_dir(d.parent)


def write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part;
    with ``durable`` the file and its directory entry are on disk when it returns."""
    ensure_dir(path.parent, durable)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    later = False
    try:
        try:
            try:
                os.fchmod(fd, file_mode())  # mkstemp creates 0600 whatever the umask
            except OSError as e:  # a filesystem without Unix modes: keep what it gives
                if e.errno not in (errno.EPERM, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
            write_all(fd, data, tmp)
            later = durable and _durable_later(os.fspath(path), path.parent)
            if durable and not later:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable and not later:
        fsync_dir(path.parent)


def write_all(fd: int, data: bytes, name: object) -> None:
    """Write every byte of ``data`` (a short ``os.write`` continues); no progress is an error, never a silent cut."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, f"write to {name} made no progress ({len(view)} of {len(data)} bytes unwritten)")
        view = view[n:]


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


def jsonl_bytes(rows: Iterable[Any]) -> bytes:
    return "".join(json.dumps(r, default=str) + "\n" for r in rows).encode("utf-8")


def write_json(path: Path, data: Any, durable: bool = True) -> None:
    write_bytes(path, json_bytes(data), durable)


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    write_bytes(path, jsonl_bytes(rows))


def file_record(data: bytes, path: Path | None = None) -> dict[str, Any]:
    """What ``files`` maps record of a file written with ``data``: its size and sha256, and (given the file's
    ``path``) its mtime in ns: a file whose mtime is still the recorded one was not rewritten since, so the
    planner need not hash it (store.status.verify_files)."""
    rec: dict[str, Any] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if path is not None:
        try:
            rec["mtime_ns"] = os.stat(path).st_mtime_ns
        except OSError:
            pass
    return rec


def append_jsonl(path: Path, row: Any) -> None:
    """Append one line. One ``write`` of a short line with O_APPEND is atomic w.r.t. other appenders;
    should the kernel still write less (a full disk, a signal), the rest is written or an error raised,
    never a line silently cut."""
    append_jsonl_rows(path, [row])


def append_jsonl_rows(path: Path, rows: Iterable[Any]) -> None:
    """Append several lines with one ``write`` (see :func:`append_jsonl`)."""
    ensure_dir(path.parent)
    line = "".join(json.dumps(row, default=str, sort_keys=True) + "\n" for row in rows).encode()
    if not line:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the kernel applies the umask
    try:
        write_all(fd, line, path)
    finally:
        os.close(fd)


def read_json(path: Path | str) -> Any | None:
    """The parsed file, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def clean_temp_files(path: Path, older_than_s: float = TEMP_MAX_AGE_S, depth: int = 1) -> list[Path]:
    """Remove the temp files of killed writes (``.<name>.<random>.tmp``, nothing else) in ``path`` and
    its subdirectories down to ``depth`` levels (a result dir: itself and its ``trial<t>/`` dirs),
    when untouched for ``older_than_s`` seconds, so that a live writer's temp file is never taken.
    Returns what was removed; files that cannot be removed (another user's) are left alone."""
    removed: list[Path] = []
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(path))
    except OSError:
        return removed
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                if depth > 0:
                    removed += clean_temp_files(Path(e.path), older_than_s, depth - 1)
            elif TEMP_RE.match(e.name) and e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            continue
    return removed

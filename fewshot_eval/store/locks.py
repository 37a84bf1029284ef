"""Locks that keep concurrent sweeps and jobs from doubling or losing work.

* ``result_lock(dir)``  -- a sibling file ``.<name>.lock`` next to the result dir, held *shared*
  by every job writing into the dir for its whole run and *exclusive* by :func:`move_aside`:
  a result is never moved while a job writes into it, and a job never writes into a moved dir.
* ``claim_trials(dir, trials)`` -- one lock per trial (``.lock.trial<t>``), so split-trial jobs
  of one result run side by side and never compute the same trial twice.
* ``locked(dir/.lock, wait=True)`` -- the short aggregation lock: the last trial writes results.json.

Where ``flock`` does not work (some NFS/Lustre mounts answer ENOLCK/EOPNOTSUPP), or when
``FEWSHOT_LOCKS=files`` forces it, :func:`locked` falls back to lock *files* created with
``O_EXCL`` next to the lock path: ``<path>.x`` (exclusive) and ``<path>.s-<token>`` (one per
shared holder). Each holds its owner (host, pid, process start time); a thread refreshes their
mtime every ``HEARTBEAT_S`` while they are held. A lock file is stale -- and removed by the next
process that wants the lock -- when its owner is a dead process on this host, or when its
heartbeat is older than ``STALE_S`` (owners on other hosts). An exclusive holder first creates
``.x`` and then checks that no live shared file exists; a shared holder creates its file and then
checks that no live ``.x`` exists: of two racing holders at least one sees the other and backs off.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from fewshot_eval.store import layout

LOCKS_ENV = "FEWSHOT_LOCKS"  # "files": always use the lock-file fallback (tests, filesystems known to lack flock)
HEARTBEAT_S = 10.0
STALE_S = 90.0  # a lock file of another host not refreshed for this long is taken as abandoned
POLL_S = 0.05
# errors of flock itself (not "held by another"): the filesystem does not support it
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


class ResultBusy(RuntimeError):
    """Another process is writing into the result dir."""


def files_forced() -> bool:
    return os.environ.get(LOCKS_ENV, "").strip().lower() in ("files", "file", "excl", "o_excl")


@contextmanager
def locked(path: Path, wait: bool = False, shared: bool = False) -> Iterator[bool]:
    """Hold a lock on ``path``; yields False when another process holds it (unless ``wait``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if files_forced():
        with file_locked(path, wait, shared) as ok:
            yield ok
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    fallback = False
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError as e:
            if e.errno not in _NO_FLOCK:
                raise
            fallback = True  # this filesystem has no flock: lock files instead (below, after closing fd)
        if not fallback:
            yield True
    finally:
        os.close(fd)
    if fallback:
        with file_locked(path, wait, shared) as ok:
            yield ok


# ---- the lock-file fallback ------------------------------------------------------------------
def _start_time(pid: int) -> Optional[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


_OWNER = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _owner() -> dict[str, Any]:
    if _OWNER["pid"] != os.getpid():  # forked
        _OWNER.update(pid=os.getpid(), start=_start_time(os.getpid()))
    return dict(_OWNER)


class _Heartbeat:
    """Refreshes the mtime of every lock file this process holds."""

    def __init__(self) -> None:
        self.held: set[Path] = set()
        self.mutex = threading.Lock()
        self.thread: Optional[threading.Thread] = None
        self.pid = 0

    def add(self, path: Path) -> None:
        with self.mutex:
            self.held.add(path)
            if self.thread is None or not self.thread.is_alive() or self.pid != os.getpid():
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self._run, name="fewshot-lock-heartbeat", daemon=True)
                self.thread.start()

    def remove(self, path: Path) -> None:
        with self.mutex:
            self.held.discard(path)

    def _run(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            with self.mutex:
                paths = list(self.held)
            for p in paths:
                try:
                    os.utime(p)
                except OSError:
                    pass


_heartbeat = _Heartbeat()


def _stale(path: Path) -> bool:
    """A lock file whose owner is gone: a dead process of this host, or no heartbeat for STALE_S."""
    try:
        st = path.stat()
        owner = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return False  # already gone: not ours to remove
    except (OSError, ValueError):
        owner = {}
        try:
            st = path.stat()
        except OSError:
            return False
        # being written right now (created, owner not yet in it): give it a moment
        return time.time() - st.st_mtime > STALE_S
    if owner.get("host") == _OWNER["host"] and owner.get("pid"):
        start = _start_time(int(owner["pid"]))
        if start is None or (owner.get("start") and start != owner["start"]):
            return True  # that process is gone (or its pid was reused)
        return False
    return time.time() - st.st_mtime > STALE_S


def _remove_stale(path: Path) -> None:
    if _stale(path):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps(_owner()).encode())
    finally:
        os.close(fd)
    return True


def _live_shared(path: Path, mine: Optional[Path] = None) -> bool:
    live = False
    for f in path.parent.glob(path.name + ".s-*"):
        if f == mine:
            continue
        _remove_stale(f)
        if f.exists():
            live = True
    return live


def _try_file_lock(path: Path, shared: bool) -> Optional[Path]:
    """One attempt: the lock file created (the lock is held), or None (held by another)."""
    excl = path.with_name(path.name + ".x")
    if shared:
        mine = path.with_name(f"{path.name}.s-{uuid.uuid4().hex[:12]}")
        if excl.exists():
            _remove_stale(excl)
            if excl.exists():
                return None
        _create(mine)
        if excl.exists():  # an exclusive holder came in between: it wins
            _remove_stale(excl)
            if excl.exists():
                mine.unlink(missing_ok=True)
                return None
        return mine
    if not _create(excl):
        _remove_stale(excl)
        if not _create(excl):
            return None
    if _live_shared(path):
        excl.unlink(missing_ok=True)
        return None
    return excl


@contextmanager
def file_locked(path: Path, wait: bool = False, shared: bool = False) -> Iterator[bool]:
    """:func:`locked` with ``O_EXCL`` lock files (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    held = _try_file_lock(path, shared)
    delay = POLL_S
    while held is None and wait:
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
        held = _try_file_lock(path, shared)
    if held is None:
        yield False
        return
    _heartbeat.add(held)
    try:
        yield True
    finally:
        _heartbeat.remove(held)
        held.unlink(missing_ok=True)


def result_lock_path(result_dir: Path) -> Path:
    return result_dir.parent / f".{result_dir.name}{layout.LOCK}"


@contextmanager
def writing(result_dir: Path) -> Iterator[None]:
    """Shared hold on a result dir for a job's whole run (blocks only while it is being moved aside)."""
    with locked(result_lock_path(result_dir), wait=True, shared=True):
        yield


@contextmanager
def claim_trials(result_dir: Path, trials: list[int]) -> Iterator[list[int]]:
    """Lock each trial of a result dir; yields the trials this process holds (the others run elsewhere)."""
    with ExitStack() as stack:
        held = [t for t in trials if stack.enter_context(locked(result_dir / f"{layout.LOCK}.trial{t}"))]
        yield held


def move_aside(result_dir: Path, still: Optional[Callable[[], bool]] = None) -> Path | None:
    """Rename an old result to ``<dir>.old-<time>`` (never delete it); returns the new path, or None
    when there is nothing to move (or ``still``, asked under the lock, says it no longer needs moving).
    Raises :class:`ResultBusy` while a job writes into it."""
    with locked(result_lock_path(result_dir)) as ok:
        if not ok:
            raise ResultBusy(f"{result_dir} is being written by another job; not moved (re-run once it has finished).")
        if not (result_dir.exists() or result_dir.is_symlink()) or (still is not None and not still()):
            return None
        return _rename_aside(result_dir, "old")


def _rename_aside(path: Path, word: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.{word}-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{word}-{stamp}-{n}")
        n += 1
    path.rename(target)
    return target


def set_aside(path: Path, wrong: Optional[Callable[[Path], bool]] = None) -> Optional[Path]:
    """Rename a file or dir that is not what it should be (a results.json that is another result's, a trial
    dir that is a file) to ``<name>.corrupt-<time>`` beside it, never deleting it; only when ``wrong(path)``
    (default: always) holds. Returns the new path, or None (nothing there, or another process was first).
    The caller holds the lock that orders writers of ``path``."""
    if not (path.exists() or path.is_symlink()) or (wrong is not None and not wrong(path)):
        return None
    try:
        return _rename_aside(path, "corrupt")
    except FileNotFoundError:
        return None


def is_lock_file(name: str, prefix: str) -> bool:
    """Is ``name`` a fallback lock file (``FEWSHOT_LOCKS=files``) of the lock path named ``prefix``
    (``.lock``, ``.lock.trial<t>``, ``.<dir>.lock``): ``<prefix>[.trial<t>].x`` or ``...s-<token>``?
    The flock files themselves (``.lock``, ``.lock.trial0``) are not."""
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix):]
    if rest.startswith(".trial"):
        rest = rest[len(".trial"):].lstrip("0123456789")
    return rest == ".x" or rest.startswith(".s-")


def remove_if_stale(path: Path) -> bool:
    """Remove a fallback lock file whose owner is gone, by the rule every lock taker applies
    (:func:`_stale`); True when it was removed."""
    if not _stale(path):
        return False
    try:
        path.unlink()
    except OSError:
        return False
    return True

"""Watching and stopping a sweep: progress lines or a bar while it runs, one line when it is stopped.

* ``job_prefix`` -- ``"[3/18] "`` in front of a job's log lines when a launcher runs several jobs in
  this process; ``trial_tag`` -- ``"trial 1 (2/3)"`` while a job runs its trials (set by run/job.py).
* :class:`SweepProgress` -- a launcher calls ``finished(outcome, line)`` once per finished job. On a
  terminal (stderr is a TTY) it draws a tqdm bar on stderr; otherwise it prints plain lines to
  stdout, e.g. ``fewshot-eval: [12/40] done, 1 failed, ETA 3m10s`` -- after every job, or at most
  every ``PLAIN_EVERY_S`` seconds in sweeps of more than ``PLAIN_EVERY_JOB_UP_TO`` jobs.
* :class:`Interrupted`, :func:`signals_raise`, :func:`shielded` -- Ctrl-C (SIGINT), SIGTERM and
  SIGHUP stop a run the same way: an exception the launchers see (to stop their job processes)
  and that the app turns into one line and exit status 128 + signal number (130, 143, 129).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator, Optional, TextIO

from fewshot_eval.outcome import Outcome

# "[3/18] " in front of each job's log line when a launcher runs several jobs in this process.
job_prefix = ""
# "trial 1 (2/3)" while a job runs its trials: the trial and its place among the ones this job runs.
trial_tag = ""

PLAIN_EVERY_JOB_UP_TO = 100  # plain lines after every finished job in sweeps up to this size ...
PLAIN_EVERY_S = 10.0  # ... and at most every this many seconds in bigger ones (plus the last line)


def fmt_duration(seconds: float) -> str:
    """``45s``, ``3m10s``, ``2h05m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class SweepProgress:
    """Jobs done/total, failures and an ETA of one launch; update with :meth:`finished` per finished job.

    ``stream``: where a bar would go (default ``sys.stderr``); a bar is drawn when it is a TTY.
    ``out``: where plain lines go (default ``sys.stdout``), and the per-job lines above the bar.
    """

    def __init__(self, total: int, stream: Optional[TextIO] = None, out: Optional[TextIO] = None, every_s: Optional[float] = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.out = out
        self.every_s = every_s if every_s is not None else (0.0 if total <= PLAIN_EVERY_JOB_UP_TO else PLAIN_EVERY_S)
        self.counts: Counter[Outcome] = Counter()
        self.done = 0
        self.t0 = time.monotonic()
        self._last_line = float("-inf")
        self.bar: Any = None
        if is_tty(self.stream):
            from tqdm import tqdm

            # smoothing=0: the ETA uses the average job time so far (job times vary too much for an EMA)
            self.bar = tqdm(total=total, file=self.stream, desc="fewshot-eval", unit="job", dynamic_ncols=True, smoothing=0)

    def _out(self) -> TextIO:
        return self.out if self.out is not None else sys.stdout

    def tally(self) -> str:
        """``1 failed`` (always), then ``2 running elsewhere`` when there are any."""
        parts = [f"{self.counts[Outcome.FAILED]} failed"]
        if self.counts[Outcome.ELSEWHERE]:
            parts.append(f"{self.counts[Outcome.ELSEWHERE]} running elsewhere")
        return ", ".join(parts)

    def eta(self) -> str:
        elapsed = time.monotonic() - self.t0
        if self.done >= self.total:
            return f"took {fmt_duration(elapsed)}"
        if not self.done:
            return "ETA ?"
        return f"ETA {fmt_duration(elapsed / self.done * (self.total - self.done))}"

    def status_line(self, line: str = "") -> str:
        """``fewshot-eval: [12/40] done, 1 failed, ETA 3m10s``; with a job's ``line``:
        ``fewshot-eval: [12/40] <line> | 1 failed, ETA 3m10s``."""
        head = f"fewshot-eval: [{self.done}/{self.total}]"
        return f"{head} {line} | {self.tally()}, {self.eta()}" if line else f"{head} done, {self.tally()}, {self.eta()}"

    def finished(self, outcome: Outcome, line: str = "") -> None:
        """One more job has finished with ``outcome``; ``line`` (optional) says how, e.g.
        ``random x copa_demo nshot=0: ran in 1.2s`` -- it is always shown."""
        self.done += 1
        self.counts[outcome] += 1
        if self.bar is not None:
            if line:
                self.bar.write(f"fewshot-eval: {line}", file=self._out())
            if self.counts[Outcome.FAILED] or self.counts[Outcome.ELSEWHERE]:
                self.bar.set_postfix_str(self.tally(), refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if line or self.done >= self.total or outcome == Outcome.FAILED or now - self._last_line >= self.every_s:
            self._last_line = now
            print(self.status_line(line), file=self._out(), flush=True)

    @contextmanager
    def stdout_above_bar(self) -> Iterator[None]:
        """While a bar is drawn, whole lines written to ``sys.stdout`` (jobs' log records, prints) are
        written above it instead of through it. No bar: nothing changes."""
        if self.bar is None:
            yield
            return
        real = sys.stdout
        sys.stdout = _AboveBars(real, self.stream)  # type: ignore[assignment]
        try:
            yield
        finally:
            above = sys.stdout
            sys.stdout = real
            if isinstance(above, _AboveBars):
                above.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "SweepProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _AboveBars:
    """A text stream that writes whole lines to ``wrapped`` with the tqdm bars on ``bar_stream``
    cleared first and redrawn after (tqdm's DummyTqdmFile does not clear a bar drawn on another
    stream); anything else (isatty, fileno, encoding) is the wrapped stream's."""

    def __init__(self, wrapped: TextIO, bar_stream: TextIO) -> None:
        self._wrapped = wrapped
        self._bar_stream = bar_stream
        self._buf: list[str] = []

    def write(self, text: str) -> int:
        head, nl, tail = text.rpartition("\n")
        if not nl:
            self._buf.append(text)
            return len(text)
        from tqdm import tqdm

        with tqdm.external_write_mode(file=self._bar_stream):
            self._wrapped.write("".join(self._buf) + head + nl)
            self._wrapped.flush()
        self._buf = [tail] if tail else []
        return len(text)

    def flush(self) -> None:  # a partial line waits for its end (or for close)
        self._wrapped.flush()

    def close(self) -> None:
        """Write what is left of a partial line; the wrapped stream stays open."""
        if self._buf:
            self.write("\n")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


# ---------------------------------------------------------------------------------- stopping a run
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (SIGINT), SIGTERM or SIGHUP.

    A KeyboardInterrupt, so that Hydra (which reports ``Exception``) and the jobs' ``except
    Exception`` let it through; the app prints :meth:`message` and exits with :attr:`exit_status`.
    """

    def __init__(self, signum: int = signal.SIGINT, detail: str = "") -> None:
        super().__init__(signum, detail)
        self.signum = int(signum)
        self.detail = detail

    @classmethod
    def of(cls, exc: BaseException, detail: str = "") -> "Interrupted":
        """``exc`` (a KeyboardInterrupt: Ctrl-C, or an :class:`Interrupted`) with ``detail`` added."""
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        old = exc.detail if isinstance(exc, Interrupted) else ""
        return cls(signum, "; ".join(d for d in (detail, old) if d))

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def message(self) -> str:
        what = "interrupted" if self.signum == signal.SIGINT else f"stopped by {signal.Signals(self.signum).name}"
        detail = f" ({self.detail})" if self.detail else ""
        return f"fewshot-eval: {what}{detail}; finished results are kept, re-run the same command to continue."


received: Optional[int] = None  # the stop signal received inside signals_raise(), if any


def _raise(signum: int, frame: Any) -> None:
    global received
    received = signum
    raise Interrupted(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def signals_raise() -> Iterator[None]:
    """While inside: SIGTERM and SIGHUP raise :class:`Interrupted` (as Ctrl-C raises KeyboardInterrupt),
    so ``finally`` blocks run and launchers can stop their job processes. A signal that is ignored
    (``nohup`` ignores SIGHUP) or already handled is left as it is."""
    global received
    received = None
    old: dict[int, Any] = {}
    if _main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                old[sig] = signal.signal(sig, _raise)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # Ctrl-C: also remembered (see received)
            old[signal.SIGINT] = signal.signal(signal.SIGINT, _raise)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def ignore_stop_signals() -> None:
    """From now on SIGINT, SIGTERM and SIGHUP are ignored (the process is on its way out)."""
    if _main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


@contextmanager
def shielded() -> Iterator[None]:
    """While inside (a short clean-up, e.g. stopping job processes): SIGINT, SIGTERM and SIGHUP are
    ignored, so a second Ctrl-C cannot leave the clean-up half done."""
    old: dict[int, Any] = {}
    if _main_thread():
        for sig in STOP_SIGNALS:
            old[sig] = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

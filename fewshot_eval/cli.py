"""Command line: the Hydra app, plus a few subcommands that are not jobs.

    fewshot-eval [-m] key=value ...          the Hydra app (see --help)
    fewshot-eval report OUTPUT_DIR ...       collect results into tables
    fewshot-eval status [-m] key=value ...   where a sweep stands (counts per model and task setting);
                                             --missing FILE.csv: the jobs to run again (fewshot-eval -m job_list=FILE.csv)
    fewshot-eval prefetch [-m] key=value ... fetch what the sweep's jobs read from the HuggingFace hub
    fewshot-eval list [experiments|models|tasks|model-groups|task-groups|task-defs|sites]
    fewshot-eval recalc RESULT_DIR ...       recompute metrics from stored predictions
    fewshot-eval verify OUTPUT_DIR ...       check every result below by content (exit 1 if one is broken)
"""

from __future__ import annotations

import sys

SUBCOMMANDS = ("report", "status", "prefetch", "list", "recalc", "verify")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    code = 0
    try:
        try:
            if argv and argv[0] in SUBCOMMANDS:
                from fewshot_eval import commands

                code = commands.run(argv)
            else:
                from fewshot_eval.app import run_hydra

                code = run_hydra()
        finally:
            sys.stdout.flush()  # now rather than at exit, where a broken pipe cannot be handled
    except BrokenPipeError:  # the reader went away, e.g. `fewshot-eval list | head -1`
        from fewshot_eval.hydra_errors import quiet_broken_pipe

        quiet_broken_pipe()
        code = 0 if _only_prints(argv) else 1
    except KeyboardInterrupt as e:  # Ctrl-C outside the app's own handling: while modules import, in a subcommand
        code = _interrupted(e)
    if code >= 128:  # stopped by a signal: the line is out; Python would turn a Ctrl-C it saw in passing into -SIGINT
        _stopped_exit(code)
    _exit_on_stop_signal()
    sys.exit(code)


def _stopped_exit(code: int) -> None:
    """Exit with ``code`` now: logs and streams flushed, no shutdown hooks that a second signal could interrupt."""
    import logging
    import os

    try:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


def _interrupted(e: KeyboardInterrupt) -> int:
    """One line and 128 + the signal number for a stop that reached the top (``progress.Interrupted``)."""
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not turn the line into a traceback
    from fewshot_eval.progress import Interrupted

    stop = e if isinstance(e, Interrupted) else Interrupted.of(e)
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(stop.message(), file=sys.stderr, flush=True)
    return stop.exit_status


def _exit_on_stop_signal() -> None:
    """On the way out (Python's shutdown joins threads, runs atexit hooks): a Ctrl-C now still ends the
    process at once, with one line and 130 -- never a traceback from a shutdown hook, never ignored."""
    import os
    import signal

    def stop(signum: int, frame: object) -> None:
        from fewshot_eval.progress import Interrupted

        try:
            print(Interrupted(signum).message(), file=sys.stderr, flush=True)
        finally:
            os._exit(128 + signum)

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # an ignored Ctrl-C stays ignored
        signal.signal(signal.SIGINT, stop)


def _only_prints(argv: list[str]) -> bool:
    """A subcommand that only prints has done its job when its reader goes away (exit 0); recalc,
    ``report --out`` and the Hydra app were cut short (exit 1)."""
    first = argv[0] if argv else ""
    return first in ("list", "status", "verify") or (first == "report" and not any(a.startswith(("--out", "--long")) for a in argv))

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
    sys.exit(code)


def _only_prints(argv: list[str]) -> bool:
    """A subcommand that only prints has done its job when its reader goes away (exit 0); recalc,
    ``report --out`` and the Hydra app were cut short (exit 1)."""
    first = argv[0] if argv else ""
    return first in ("list", "status", "verify") or (first == "report" and not any(a.startswith(("--out", "--long")) for a in argv))

"""Command line: the Hydra app, plus a few subcommands that are not jobs.

    fewshot-eval [-m] key=value ...          the Hydra app (see --help)
    fewshot-eval report OUTPUT_DIR ...       collect results into tables
    fewshot-eval list [experiments|models|tasks|groups]
    fewshot-eval recalc RESULT_DIR ...       recompute metrics from stored predictions
"""

from __future__ import annotations

import sys

SUBCOMMANDS = ("report", "list", "recalc")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        from fewshot_eval import commands

        sys.exit(commands.run(argv))
    from fewshot_eval.app import run_hydra

    run_hydra()

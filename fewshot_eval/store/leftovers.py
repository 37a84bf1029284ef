"""What killed writers and sweeps leave beside a result that completed later, tidied by the next sweep.

The planner of a sweep that launches (never a dry run, ``status`` or ``report``) calls :func:`tidy` for
each result it skips as complete, after planning (``Planner.commit``):

* temp files of killed writes (``.<name>.<random>.tmp``, untouched for ``atomic.TEMP_MAX_AGE_S``: never a live
  writer's), in the result dir and its trial dirs;
* ``submitting.json`` (a sweep's intent before ``sbatch``) older than ``results.json``: the result completed
  after it was written, so the submission it announces has nothing left to do (a sweep re-running a result
  moves the old dir aside first, so a newer intent is never in a complete dir);
* lock files of dead owners (``FEWSHOT_LOCKS=files``: ``.lock.s-*``, ``.lock.x``, per trial and the
  result's sibling ``.<dir>.lock.*``), by the rule every lock taker applies (``store.locks``);
* a deleted ``identity.json``, written again from the result's identity and its results.json's fingerprint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import clean_temp_files, read_json, write_json
from fewshot_eval.store.locks import remove_stale_lock_files
from fewshot_eval.store.markers import INTENT


def tidy(result_dir: Path, identity: dict[str, Any]) -> list[str]:
    """Tidy one complete result (see the module docstring); returns what was removed or repaired."""
    res = read_json(result_dir / layout.RESULTS)
    if not isinstance(res, dict) or not res.get("fingerprint"):
        return []  # not complete any more (moved aside, being recomputed): left alone
    done = [str(p) for p in clean_temp_files(result_dir)]
    try:
        results_mtime = os.stat(result_dir / layout.RESULTS).st_mtime_ns
        if os.stat(result_dir / INTENT).st_mtime_ns < results_mtime:
            (result_dir / INTENT).unlink()
            done.append(str(result_dir / INTENT))
    except OSError:
        pass
    done += [str(p) for p in remove_stale_lock_files(result_dir)]
    if not (result_dir / layout.IDENTITY).exists():
        try:
            write_json(result_dir / layout.IDENTITY, {"fingerprint": res["fingerprint"], **identity})
            done.append(f"{result_dir / layout.IDENTITY} (written again)")
        except OSError:
            pass
    return done

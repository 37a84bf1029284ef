"""``fewshot-eval verify DIR ...``: check every result below some dirs by content, without planning.

Each result dir (one holding ``results.json`` or ``trial<t>/metrics.json``) is checked as the planner
checks a result before skipping it with ``verify=true``: results.json is this dir's (store.status.foreign),
every file its ``files`` maps list is there with the recorded size and sha256 (0.1.0 results: by content,
store/legacy.py). Moved-aside dirs (``.old-*``, ``.corrupt-*``) are left out. Nothing is written: the next
sweep over these results recomputes what is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from fewshot_eval.store import layout
from fewshot_eval.store.legacy import legacy_problems, legacy_trial_files
from fewshot_eval.store.status import foreign, load_checked, malformed, verify_files

_TRIAL = re.compile(r"^trial\d+$")
_ASIDE = re.compile(r"\.(old|corrupt)-\d{8}-\d{6}(-\d+)?$")


def result_dirs(roots: Iterable[Path]) -> Iterator[Path]:
    """The result dirs below ``roots`` (a root may be one itself), in sorted order."""
    for root in roots:
        if _is_result(root):
            yield root
            continue
        for dirpath, dirnames, _ in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _ASIDE.search(d))
            for d in list(dirnames):
                path = Path(dirpath) / d
                if _is_result(path):
                    dirnames.remove(d)
                    yield path


def _is_result(path: Path) -> bool:
    if (path / layout.RESULTS).exists():
        return True
    try:
        return any(_TRIAL.match(e.name) and os.path.exists(os.path.join(e.path, layout.METRICS)) for e in os.scandir(path))
    except OSError:
        return False


def check_result(rdir: Path) -> list[str]:
    """What is wrong with one result dir ([] when nothing is)."""
    res, bad = load_checked(rdir / layout.RESULTS)
    if bad:
        return [f"corrupt: {bad}"]
    problems: list[str] = []
    if res is not None:
        why = malformed(res) or foreign(rdir, res)
        if why:
            return [f"corrupt: {why}"]
        if isinstance(res.get("files"), Mapping):
            problems += verify_files(rdir, res["files"], hashes=True)
        else:
            problems += legacy_problems(rdir, res, [int(t) for t in res.get("trials") or [] if isinstance(t, int)])
    listed = set(res.get("trials") or []) if isinstance(res, dict) else set()
    for tdir in sorted(p for p in rdir.glob("trial*") if _TRIAL.match(p.name)):
        t = int(tdir.name[len("trial"):])
        if t in listed:
            continue  # checked through results.json's map
        if not tdir.is_dir():
            problems.append(f"corrupt: {tdir.name} is a file, not a directory")
            continue
        m, bad = load_checked(tdir / layout.METRICS)
        if bad or not isinstance(m, dict):
            problems.append(f"{tdir.name}/{layout.METRICS} {bad or 'missing'}")
        elif isinstance(m.get("files"), Mapping):
            problems += verify_files(tdir, m["files"], prefix=f"{tdir.name}/", hashes=True)
        else:
            problems += legacy_trial_files(rdir, t)[1]
    return problems


def verify_tree(roots: Iterable[Path], out=print) -> tuple[int, int]:  # noqa: ANN001
    """Check every result below ``roots``; one line per result with problems (through ``out``).
    Returns (results checked, results with problems)."""
    checked = broken = 0
    for rdir in result_dirs(roots):
        checked += 1
        problems = check_result(rdir)
        if problems:
            broken += 1
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            out(f"{rdir}: {', '.join(problems[:3])}{more}")
    return checked, broken

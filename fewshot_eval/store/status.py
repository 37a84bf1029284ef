"""Is a job's result complete, partial, stale or missing? Read from disk, never guessed.

A trial is done once its ``trial<t>/metrics.json`` exists *and* the predictions files listed in its
``files`` map exist with the recorded sizes; a result is complete once ``results.json`` covers the
trials *and* the trial files listed in its ``files`` map exist with the recorded sizes, and the
files of at most ``HASH_MAX_BYTES`` (metrics, small predictions files) with the recorded sha256 when
their mtime is not the recorded one (a file written again; maps of 0.2.0 record no mtimes): the status
check runs for every job of a plan (10,000 jobs in a few seconds), so it costs a ``stat`` per file, and
every file is hashed only with ``verify`` (``verify=true``, ``fewshot-eval verify``). Results of 0.1.0 have no ``files``
maps: their files are checked by content, and the map recorded once (``store/legacy.py``).

A ``results.json`` that is not a result of this directory -- not JSON, ``{}``, a directory, or one
copied from another result (its model, task setting, nshot or identity digest are not this dir's, or
its fingerprint is not the one ``identity.json`` records) -- is *corrupt*: ``ResultStatus.corrupt``
says why and the result is recomputed (the job moves the bad file, or the whole dir when its trials are
foreign too, aside: never deleted). A result dir or trial dir that is a file is corrupt the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Optional, Union

from fewshot_eval.store import layout
from fewshot_eval.store.atomic import read_json
from fewshot_eval.store.dir_listing import DirListing
from fewshot_eval.store.legacy import legacy_problems, legacy_trial_files

COMPLETE, PARTIAL, STALE, MISSING = "complete", "partial", "stale", "missing"
# Files up to this size are hashed (sha256 against the files map) whenever a result is checked; larger
# ones only with ``verify``: a plan of 10,000 complete results reads their metrics, not their predictions.
HASH_MAX_BYTES = 64 * 1024
_RESULT_NAME = re.compile(r"^-?\d+shot\.[0-9a-f]{8}$")  # store.layout.result_dir's last part


# The fingerprint a result must carry: one string, or the set of accepted ones (the current
# formula's and those of earlier releases that give the same numbers).
Fingerprints = Union[str, Collection[str]]


def fingerprint_ok(recorded: object, expected: Fingerprints) -> bool:
    """Does a recorded fingerprint match what the job expects?"""
    return recorded == expected if isinstance(expected, str) else recorded in expected


@dataclass
class ResultStatus:
    state: str
    done_trials: list[int] = field(default_factory=list)
    detail: str = ""
    # files the result recorded that are missing or of another size ("trial1/<name> missing", ...);
    # a done trial can be listed when results.json no longer matches it (results.json is then rewritten)
    problems: list[str] = field(default_factory=list)
    # why results.json (or the dir) is not this result's ("results.json is a directory", ...): '' when fine
    corrupt: str = ""
    # the whole dir is to be moved aside (its trials are another result's too, or it is a file)
    aside: bool = False


def verify_files(base: Path | str, files: Any, prefix: str = "", hashes: bool | int = HASH_MAX_BYTES) -> list[str]:
    """Problems with the files a ``files`` map lists ({name relative to ``base``: {size, sha256}}):
    ``"<prefix><name> missing"``, ``"... is N bytes, M recorded"`` or ``"... content differs from its
    recorded sha256"``: the content of files up to ``hashes`` bytes whose mtime is not the recorded one (written
    again since; maps without mtimes: always), ``True``: of every file, ``False``: of none.
    An empty list when all are there, or when there is no map."""
    if not isinstance(files, (dict, Mapping)):  # dict first: isinstance against the ABC alone is slow
        return []
    problems = []
    root = os.fspath(base)
    for name, rec in files.items():
        path = os.path.join(root, name)  # str, not Path: this runs for every job of a plan
        try:
            st = os.stat(path)
        except OSError:
            problems.append(f"{prefix}{name} missing")
            continue
        size = st.st_size
        want = rec.get("size") if isinstance(rec, (dict, Mapping)) else None
        if isinstance(want, int) and size != want:
            problems.append(f"{prefix}{name} is {size} bytes, {want} recorded")
        elif hashes is not False and isinstance(rec, (dict, Mapping)) and rec.get("sha256") and (
                hashes is True or (size <= hashes and rec.get("mtime_ns") != st.st_mtime_ns)):
            if _sha256(path) != rec["sha256"]:
                problems.append(f"{prefix}{name} content differs from its recorded sha256")
    return problems


def _sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def load_checked(path: Union[Path, str]) -> tuple[Any, str]:
    """(the parsed JSON file, '') or (None, why it is corrupt); (None, '') when it is missing or cannot be
    read for another reason (permissions: not ours to call corrupt). ``path``: a str costs a plan of 100,000
    jobs no Path objects."""
    try:
        text = _read(path)
    except FileNotFoundError:
        return None, ""
    except IsADirectoryError:
        return None, f"{os.path.basename(path)} is a directory"
    except NotADirectoryError:
        return None, f"{os.path.basename(os.path.dirname(path))} is a file, not a directory"
    except OSError:
        return None, ""
    try:
        return json.loads(text.decode("utf-8") if text[:1] == b"{" else text), ""  # ours: UTF-8 objects (no encoding to detect)
    except ValueError:
        try:  # not UTF-8 after all: as json.loads(bytes) reads it
            return json.loads(text), ""
        except ValueError:
            return None, f"{os.path.basename(path)} is not valid JSON"


def _read(path: Union[Path, str]) -> bytes:
    """The bytes of a file with four system calls (open, read until empty, close): ``open(path, "rb").read()``
    takes nine, for each of a plan's 50,000 metrics files. A directory raises IsADirectoryError, as open()."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        chunks = [os.read(fd, 1 << 16)]
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 20))
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 2 else b"".join(chunks)


def foreign(result_dir: Path, res: Mapping[str, Any], fingerprint: Fingerprints | None = None) -> str:
    """Why ``res`` (a results.json) is not the result of ``result_dir`` ('' when it is): its identity digest
    (or, for results written before it was recorded, its model, task setting or nshot) differs from the dir's place, or (given the expected ``fingerprint``,
    which it does not carry; always without one) its fingerprint is not the one the dir's ``identity.json`` records."""
    name = result_dir.name
    ident = res.get("identity_digest")
    if not _RESULT_NAME.match(name):  # not where the sweeps put results (a copy kept elsewhere): nothing to compare
        pass
    elif isinstance(ident, str):  # the digest covers model, task setting and nshot: a copy moved whole elsewhere is still its own
        if not name.endswith("." + ident[:8]):
            return f"results.json is result {ident[:8]}'s, not {name}'s"
    elif "nshot" in res and not name.startswith(f"{res['nshot']}shot."):
        return f"results.json is of nshot={res['nshot']!r}, not {name}'s"
    elif "task_setting" in res and res["task_setting"] != result_dir.parent.name:
        return f"results.json is of task setting {res['task_setting']!r}, not {result_dir.parent.name!r}"
    elif "model" in res and res["model"] != result_dir.parent.parent.name:
        return f"results.json is of model {res['model']!r}, not {result_dir.parent.parent.name!r}"
    if fingerprint is None or not fingerprint_ok(res.get("fingerprint"), fingerprint):  # a plan reads identity.json only then
        ident = read_json(result_dir / layout.IDENTITY)
        ident_fp = ident.get("fingerprint") if isinstance(ident, dict) else None
        if ident_fp is not None and ident_fp != res.get("fingerprint"):
            return "results.json's fingerprint is not the one identity.json records (copied from another result?)"
    return ""


def malformed(res: Any) -> str:
    if not isinstance(res, dict):
        return "results.json is not a JSON object"
    missing = [k for k in ("fingerprint", "trials", "results") if k not in res]
    return f"results.json lacks {', '.join(missing)}" if missing else ""


def _trial_check(result_dir: Path, trial: int, fingerprint: Fingerprints, weights: str | None = None,
                 hashes: bool | int = HASH_MAX_BYTES, names: Optional[frozenset[str]] = None) -> tuple[Optional[bool], list[str]]:
    """``names``: the result dir's entries when the caller listed it (a trial dir not among them is not read)."""
    name = layout.trial_name(trial)
    if names is not None and name not in names:  # not listed: not there
        return None, []
    tdir = os.path.join(result_dir, name)  # str, not Path: this runs for every job of a plan
    m, bad = load_checked(os.path.join(tdir, layout.METRICS))
    if not isinstance(m, dict):
        return None, [f"corrupt: {bad}"] if bad.endswith("is a file, not a directory") else []
    if not fingerprint_ok(m.get("fingerprint"), fingerprint) or not weights_ok(m.get("weights"), weights):
        return False, []
    if isinstance(m.get("files"), (dict, Mapping)):
        problems = verify_files(tdir, m["files"], prefix=f"{name}/", hashes=hashes)
    else:  # a trial of 0.1.0: its files are checked by content
        problems = legacy_trial_files(result_dir, trial)[1]
    return (None, problems) if problems else (True, [])


def weights_ok(recorded: object, expected: str | None) -> bool:
    """Weights fingerprints are compared only when both are known."""
    return recorded is None or expected is None or recorded == expected


def trial_done(result_dir: Path, trial: int, fingerprint: Fingerprints, weights: str | None = None) -> bool | None:
    """True: trial finished for this fingerprint and weights (its files all there); False: finished for
    another (stale); None: not finished, or its files are missing or truncated (it is to be recomputed)."""
    return _trial_check(result_dir, trial, fingerprint, weights)[0]


def _incomplete(problems: list[str]) -> str:
    if not problems:
        return ""
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return "incomplete: " + ", ".join(problems[:3]) + more


def result_status(result_dir: Path, fingerprint: Fingerprints, trials: list[int], weights: str | None = None,
                  record: Callable[[Callable[[], None]], None] | None = None, verify: bool = False,
                  listing: DirListing | None = None) -> ResultStatus:
    """Status of ``trials`` in ``result_dir``; ``complete`` only when results.json covers them all and
    their files are there (and the small ones, with ``verify`` all, hold what was recorded). A result whose
    files were deleted, truncated or changed is ``partial``/``missing`` (the broken trials are recomputed)
    with ``detail`` saying what is wrong; one whose results.json is not its own is that too, with ``corrupt``
    set. ``record`` takes the write of a whole 0.1.0 result's files map, for a sweep that launches to do
    (reading itself writes nothing). ``listing``: a plan's view of the tree (files it does not list are not read)."""
    hashes: bool | int = True if verify else HASH_MAX_BYTES
    names = None
    if listing is not None:
        names = listing.names(result_dir)
        if names is None:
            parent = listing.names(result_dir.parent)
            if parent is None or result_dir.name not in parent:
                return ResultStatus(MISSING)
            # there but not a listable dir (a file?): read as without a listing
    res, corrupt = load_checked(result_dir / layout.RESULTS) if names is None or layout.RESULTS in names else (None, "")
    problems: list[str] = []
    if corrupt.endswith("is a file, not a directory"):
        return ResultStatus(MISSING, detail=f"corrupt: the result dir {result_dir.name} is a file: moved aside, recomputed",
                            corrupt=f"the result dir {result_dir.name} is a file", aside=True)
    if res is not None and not corrupt:
        corrupt = malformed(res) or foreign(result_dir, res, fingerprint)
    if isinstance(res, dict) and not corrupt:
        if not fingerprint_ok(res.get("fingerprint"), fingerprint):
            return ResultStatus(STALE, detail="task data or definitions changed since this result was written")
        if not weights_ok(res.get("weights"), weights):
            return ResultStatus(STALE, detail="the model's weights changed since this result was written")
        covered = res.get("trials", [])
        if set(trials) <= set(covered):
            files = res.get("files")
            if isinstance(files, Mapping):
                wanted = tuple(f"trial{t}/" for t in trials)
                problems = verify_files(result_dir, {k: v for k, v in files.items() if k.startswith(wanted)}, hashes=hashes)
            else:  # a result of 0.1.0
                problems = legacy_problems(result_dir, res, trials, record)
            if not problems:
                return ResultStatus(COMPLETE, sorted(covered))
    elif res is None and not corrupt and names is None and not result_dir.exists():
        return ResultStatus(MISSING)
    done = []
    for t in trials:
        ok, trial_problems = _trial_check(result_dir, t, fingerprint, weights, hashes, names)
        if ok is False:
            if corrupt:  # a copied dir: its trials are another result's too
                return ResultStatus(MISSING, detail=f"corrupt: {corrupt}, its trials too: moved aside, recomputed", corrupt=corrupt, aside=True)
            return ResultStatus(STALE, detail=f"trial {t} was computed from other task data, definitions or weights")
        if ok:
            done.append(t)
        problems += [p for p in trial_problems if p not in problems]
    if not problems and not corrupt:  # most jobs of a plan: nothing to say
        return ResultStatus(PARTIAL if done else MISSING, done)
    detail = _incomplete([p for p in problems if not p.startswith("corrupt: ")])
    bad_trials = [p for p in problems if p.startswith("corrupt: ")]
    notes = ([f"corrupt: {corrupt}: set aside, recomputed"] if corrupt else []) + bad_trials + ([detail] if detail else [])
    return ResultStatus(PARTIAL if done else MISSING, done, "; ".join(notes), problems, corrupt=corrupt)

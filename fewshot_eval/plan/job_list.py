"""A list of jobs to run again, as a CSV file: ``fewshot-eval status ... --missing FILE`` writes the jobs
of a sweep that have no complete result, and a later sweep takes exactly those as its selection:

    fewshot-eval status -m models=pythia tasks=superglue nshot=0,32 hydra/launcher=submitit_slurm --missing missing.csv
    fewshot-eval -m job_list=missing.csv hydra/launcher=submitit_slurm

One row per planned job (:data:`COLUMNS`); ``overrides`` holds the job's own overrides (shell-quoted),
``config_dirs`` the ``--config-dir`` dirs it was planned with. Rows may be deleted (or the file
filtered by ``state``) before it is used. The sweep puts the overrides every row shares and the config
dirs on its command line (:func:`job_list_arguments`: the base config is the original sweep's -- its
experiment, output dir, site ...) and plans each row as one combination (:func:`job_list_combos`); a
value given on the command line (``max_parallel=2``, ``retry_failed=true``) replaces the rows' own.
"""

from __future__ import annotations

import csv
import io
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from fewshot_eval.config import ConfigError

KEY = "job_list"
COLUMNS = ("model", "task", "nshot", "trials", "state", "result_dir", "overrides", "config_dirs")
# what a job list selects: not set again on the command line of the sweep that runs it
SELECTION_KEYS = ("model", "task", "models", "tasks", "experiment", "nshot", "checkpoint", "trial")
# not recorded: set by the sweep for each job (a split trial is planned again from its result), or a
# way of running (status plans as a dry run) rather than a selection
SWEEP_SET = ("trial", "hf_offline", "planned_id", "dry_run", KEY)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


@dataclass
class JobList:
    path: Path
    rows: list[list[str]]  # each job's overrides, in file order, each distinct combination once
    config_dirs: list[str]
    result_dirs: list[str]  # where the rows' results were to go when the list was written

    @property
    def common(self) -> list[str]:
        """The overrides every row has (the original sweep's own arguments), in the first row's order."""
        if not self.rows:
            return []
        rest = [set(r) for r in self.rows[1:]]
        return [o for o in self.rows[0] if all(o in r for r in rest)]

    @property
    def varying(self) -> set[str]:
        """Keys whose value differs between rows (or that some rows lack)."""
        common = set(self.common)
        return {_key(o) for r in self.rows for o in r if o not in common}


def job_row(job: Any, state: str, config_dirs: Sequence[str]) -> dict[str, str]:
    """The row of one planned job (``fewshot_eval.plan.planner.PlannedJob``) in state ``state``."""
    u = job.unit
    overrides = [o for o in job.overrides if _key(o) not in SWEEP_SET]
    return {"model": u.model_key, "task": u.task_key, "nshot": str(u.nshot), "trials": ",".join(map(str, u.trials)), "state": state,
            "result_dir": str(u.result_dir), "overrides": shlex.join(overrides), "config_dirs": os.pathsep.join(map(str, config_dirs))}


def write_job_list(path: Path, rows: Iterable[Mapping[str, str]]) -> int:
    """Write the rows (atomically, header first); returns how many."""
    from fewshot_eval.store.atomic import write_text

    if path.suffix.lower() != ".csv":
        raise ConfigError(f"--missing {path}: the job list is a CSV file; name it <something>.csv.")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    n = 0
    for row in rows:
        writer.writerow(row)
        n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, buf.getvalue())
    return n


def read_job_list(path: str | Path, cwd: Optional[Path] = None) -> JobList:
    """The job list at ``path`` (relative to ``cwd``); a missing file or column is one line naming it."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (cwd or Path.cwd()) / p
    where = f"{KEY}={path}"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {p} ({e.strerror or e}). Write one with fewshot-eval status ... --missing {path}.") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "overrides" not in reader.fieldnames:
        raise ConfigError(f"{where}: {p} is not a job list (no 'overrides' column; columns: {', '.join(COLUMNS)}). "
                          f"Write one with fewshot-eval status ... --missing {path}.")
    rows: list[list[str]] = []
    dirs: list[str] = []
    results: list[str] = []
    for line, rec in enumerate(reader, start=2):
        if rec.get("result_dir"):
            results.append(rec["result_dir"])
        try:
            overrides = shlex.split(rec.get("overrides") or "")
        except ValueError as e:
            raise ConfigError(f"{where}: {p}:{line}: cannot split its overrides ({e}): {rec.get('overrides')!r}.") from None
        if not overrides:
            raise ConfigError(f"{where}: {p}:{line}: the row has no overrides; delete the row or write the list again.")
        bad = [o for o in overrides if _key(o) == KEY or "=" not in o]
        if bad:
            raise ConfigError(f"{where}: {p}:{line}: '{bad[0]}' is not a job's override (key=value, not {KEY}).")
        overrides = [o for o in overrides if _key(o) not in SWEEP_SET]
        if overrides not in rows:
            rows.append(overrides)
        for d in (rec.get("config_dirs") or "").split(os.pathsep):
            if d and d not in dirs:
                dirs.append(d)
    return JobList(p, rows, dirs, results)


def given(overrides: Sequence[str]) -> Optional[str]:
    """The value of ``job_list=...`` among command-line overrides (the last one), or None."""
    values = [o for o in overrides if _key(o) == KEY and "=" in o]
    value = _value(values[-1]) if values else None
    return value if value and value.lower() not in ("null", "none") else None


def _value(override: str) -> Optional[str]:
    """The value of ``override`` as Hydra reads it (``job_list='my lists/a.csv'``, ``job_list=a\\ b.csv``); as
    written where Hydra reads no single string (``a,b.csv``: a sweep; one it cannot parse: Hydra says so itself)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    raw = override.split("=", 1)[1].strip()
    try:
        o = OverridesParser.create().parse_override(override)
    except HydraException:
        return raw
    if o.is_sweep_override():
        return raw
    value = o.value()
    return value if value is None or isinstance(value, str) else raw


def hydra_value(text: str) -> str:
    """``text`` written as an override value that Hydra reads back as this string: as it is where it
    does, else quoted (``'my lists, 2/a.csv'``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Quote, QuotedString
    from hydra.errors import HydraException

    try:
        o = OverridesParser.create().parse_override(f"{KEY}={text}")
        if not o.is_sweep_override() and o.value() == text and isinstance(o.value(), str):
            return text
    except HydraException:
        pass
    return QuotedString(text=text, quote=Quote.single).with_quotes()


def job_list_arguments(overrides: Sequence[str], config_dirs: Sequence[str], cwd: Optional[Path] = None) -> tuple[list[str], list[str]]:
    """What a sweep that runs a job list adds to its command line: (the overrides every row shares -- the
    original sweep's experiment, output_dir, site ...; a key set on the command line keeps the command
    line's value --, the config dirs: the command line's, then the list's). Nothing without ``job_list=``.
    A selection on the command line as well (``model=...``, ``nshot=...``) is refused: edit the list instead."""
    path = given(overrides)
    if path is None:
        return [], list(config_dirs)
    jl = read_job_list(path, cwd)
    mine = {_key(o) for o in overrides}
    clash = [o for o in overrides if _key(o) != KEY and (_key(o) in SELECTION_KEYS or _key(o) in jl.varying)]
    if clash:
        raise ConfigError(f"{KEY}={path} selects the jobs itself: '{clash[0]}' cannot be added to it. Leave it out, or edit "
                          f"{jl.path.name} (delete rows) or write a new list with fewshot-eval status ... --missing.")
    common = [o for o in jl.common if _key(o) not in mine]
    dirs = list(config_dirs) + [d for d in jl.config_dirs if d not in config_dirs]
    return common, dirs


def job_list_combos(arguments: Sequence[str], cwd: Optional[Path] = None) -> Optional[list[list[str]]]:
    """The sweep's combinations when ``arguments`` hold ``job_list=``: each row's overrides, with a value
    given on the command line replacing the row's (``job_list`` itself left out); None otherwise."""
    path = given(arguments)
    if path is None:
        return None
    jl = read_job_list(path, cwd)
    common = set(jl.common)
    extra = {_key(o): o for o in arguments if _key(o) != KEY and o not in common}
    out = []
    for row in jl.rows:
        combo = [extra.get(_key(o), o) for o in row]
        combo += [o for k, o in extra.items() if k not in {_key(r) for r in row}]
        out.append(combo)
    return out


def moved_results(arguments: Sequence[str], jobs: Sequence[Any], cwd: Optional[Path] = None) -> Optional[str]:
    """A warning when results the list names are not among the planned jobs' (a relative ``output_dir``
    run from another directory, or a setting changed since the list was written); None otherwise."""
    path = given(arguments)
    if path is None:
        return None
    planned = {str(j.unit.result_dir) for j in jobs}
    gone = [d for d in read_job_list(path, cwd).result_dirs if d not in planned]
    if not gone:
        return None
    return (f"{KEY}={path}: {len(gone)} of its jobs plan to other result dirs than the list names (e.g. {gone[0]}): "
            f"run it from the directory the list was written in (a relative output_dir), or check what changed since.")

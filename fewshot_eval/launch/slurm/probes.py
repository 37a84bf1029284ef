"""Every SLURM command the planner and the launcher run, with a bounded time.

Two daemons answer them: the controller (slurmctld: ``squeue``, ``scontrol``, ``sbatch``) and the
accounting daemon (slurmdbd: ``sacct``). The first command a process sends to each daemon is a
*probe* with a short timeout (``FEWSHOT_SLURM_PROBE_S``, 5 s; a command that cannot connect gives
up after ~9 s of retries on its own). A daemon that does not answer is taken as down for the rest of
the sweep: it is said once (a warning), and its commands are not run again -- they answer "cannot
be reached" at once -- so a sweep with the controller down ends in seconds, not once per pool or per
array. Once a daemon has answered, later commands get the long timeout (``QUERY_S``; sbatch
``SUBMIT_S``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Optional

log = logging.getLogger("fewshot_eval")

PROBE_S = 5.0  # first command to a daemon in a sweep: silent this long = down
QUERY_S = 30.0  # later squeue / sacct / scontrol calls, once the daemon has answered
SUBMIT_S = 120.0  # sbatch, once the controller has answered
DOWN_S = 300.0  # a daemon found down is not asked again for this long (a sweep; api users re-probe later)
DAEMON = {"squeue": "slurmctld", "scontrol": "slurmctld", "sbatch": "slurmctld", "sacct": "slurmdbd"}
# what SLURM's commands print when they cannot reach a daemon (after their own retries)
_UNREACHABLE_RE = re.compile(r"Unable to contact slurm controller|Socket timed out|Connection refused|connect failure|"
                             r"Zero Bytes were transmitted|Communication connection failure|Problem talking to the database|"
                             r"Connection timed out|No route to host|Unable to establish a connection", re.I)


class SlurmUnreachable(RuntimeError):
    """The SLURM daemon a command needs cannot be reached."""


@dataclass
class Answer:
    """What one command gave: ``ok`` (exit 0, or squeue's 'invalid job id' for jobs that left the queue),
    its stdout, the line that says why not, and whether the daemon could not be reached at all."""

    ok: bool
    out: str = ""
    why: str = ""
    unreachable: bool = False


_down: dict[str, tuple[float, str]] = {}  # daemon -> (since, why)
_answered: set[str] = set()  # daemons that answered in this process
_said: set[str] = set()  # daemons found down that a warning has named (once per sweep)


def reset() -> None:
    """Forget what was learnt about the daemons (tests; a long-lived process re-probes after DOWN_S anyway)."""
    _down.clear()
    _answered.clear()
    _said.clear()


def probe_timeout() -> float:
    try:
        return float(os.environ.get("FEWSHOT_SLURM_PROBE_S") or PROBE_S)
    except ValueError:
        return PROBE_S


def down(tool: str) -> Optional[str]:
    """Why the daemon behind ``tool`` is taken as down (None: it is not)."""
    daemon = DAEMON.get(tool, tool)
    hit = _down.get(daemon)
    if hit is None:
        return None
    if time.monotonic() - hit[0] > DOWN_S:
        del _down[daemon]
        _answered.discard(daemon)
        _said.discard(daemon)
        return None
    return hit[1]


def controller_down() -> Optional[str]:
    return down("squeue")


def _start(args: list[str]) -> "subprocess.Popen[str] | str":
    """The running command, or why it could not start."""
    if not shutil.which(args[0]):
        return f"{args[0]} not found"
    try:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # a timeout kills the whole group (wrappers, retries)
    except OSError as e:
        return f"{args[0]}: {e}"


def _finish(args: list[str], proc: "subprocess.Popen[str] | str", timeout: float, limit: float) -> Answer:
    if isinstance(proc, str):
        return Answer(False, why=proc, unreachable=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            proc.kill()
        proc.communicate()
        return Answer(False, why=f"{DAEMON.get(args[0], args[0])} did not answer in time ({limit:g} s)", unreachable=True)
    if proc.returncode == 0:
        return Answer(True, out)
    if "invalid job id" in err.lower():  # squeue: the (only) job asked about left the queue (MinJobAge)
        return Answer(True, "")
    lines = (err or out).strip().splitlines()
    why = lines[-1].strip() if lines else f"{args[0]}: exit {proc.returncode}"
    return Answer(False, out, why, bool(_UNREACHABLE_RE.search(err or out)))


def _limit(tool: str, answered_limit: float) -> float:
    return answered_limit if DAEMON.get(tool, tool) in _answered else probe_timeout()


def run_many(commands: dict[str, list[str]], answered_limit: float = QUERY_S, warn: bool = True) -> dict[str, Answer]:
    """Run the commands side by side (keys are labels); those of a daemon known down answer at once.
    A daemon's first command is a probe: if it does not answer, the daemon is down for this sweep (said
    once, as a warning, by the first caller with ``warn`` -- a silent probe, e.g. the site detection's
    ``scontrol``, leaves the warning to the next one; ``warn=False``: the caller says it)."""
    out: dict[str, Answer] = {}
    started = {}
    for key, args in commands.items():
        why = down(args[0])
        if why is not None:
            out[key] = Answer(False, why=why, unreachable=True)
            _say(args[0], why, warn)
        else:
            started[key] = (args, _limit(args[0], answered_limit), _start(args))
    t0 = time.monotonic()
    for key, (args, limit, proc) in started.items():
        ans = _finish(args, proc, max(0.1, limit - (time.monotonic() - t0)), limit)
        daemon = DAEMON.get(args[0], args[0])
        if not ans.unreachable:  # it answered (maybe with an error: a refused sbatch, an unknown cluster)
            _answered.add(daemon)
        elif daemon not in _down:  # a probe without an answer, or a daemon that stopped answering
            _down[daemon] = (time.monotonic(), ans.why)
            _say(args[0], ans.why, warn)
        out[key] = ans
    return out


def _say(tool: str, why: str, warn: bool) -> None:
    daemon = DAEMON.get(tool, tool)
    if warn and daemon not in _said:
        _said.add(daemon)
        log.warning("fewshot-eval: %s cannot be reached (%s); not asked again in this sweep", tool, why)


def run(args: list[str], answered_limit: float = QUERY_S, warn: bool = True) -> Answer:
    """One command (see :func:`run_many`)."""
    return run_many({"cmd": args}, answered_limit, warn)["cmd"]

"""One job process of the ``local_parallel`` launcher (see :mod:`fewshot_eval.launch.parallel`).

    python -m fewshot_eval.launch.parallel_job SHARED.pkl JOB.pkl RETURN.pkl

Loads the task function, config loader and Hydra's global state (``SHARED.pkl``, once per sweep)
and the job's composed config (``JOB.pkl``), runs Hydra's ``run_job`` -- as Hydra's own launchers do
in their workers -- and writes the ``JobReturn`` to ``RETURN.pkl``. The callbacks run in the sweep's
process, so none run here. Exit status 1 when the job failed (its traceback is on stderr: the job's
log), 74 when its return could not be written (a full disk), 128 + N when signal N stopped it.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

SWEEP_PID_ENV = "FEWSHOT_SWEEP_PID"  # the sweep's pid, set by launch.parallel: a job whose sweep is gone exits
EXIT_UNWRITABLE = 74  # sysexits' EX_IOERR: the job's return could not be written (a full disk?)


class _NoCallbacks:
    """The job's callbacks run in the sweep's process (``on_job_start``/``on_job_end`` around this one)."""

    def on_job_start(self, **kwargs: Any) -> None:
        pass

    def on_job_end(self, **kwargs: Any) -> None:
        pass


def run(shared: Path, job: Path, out: Path) -> int:
    import cloudpickle
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobStatus, run_job, setup_globals
    from hydra.types import HydraContext

    from fewshot_eval import progress
    from fewshot_eval.hydra_errors import quiet_log_write_errors
    from fewshot_eval.store.atomic import write_bytes

    quiet_log_write_errors()

    with progress.signals_raise():  # SIGTERM/SIGHUP from the sweep: finally blocks run (locks, claims)
        try:
            task_function, config_loader, state = cloudpickle.loads(shared.read_bytes())
            config = cloudpickle.loads(job.read_bytes())
            Singleton.set_state(state)
            setup_globals()
            context = HydraContext(config_loader=config_loader, callbacks=_NoCallbacks())  # type: ignore[arg-type]
            ret = run_job(hydra_context=context, task_function=task_function, config=config,
                          job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        except KeyboardInterrupt as e:
            stop = e if isinstance(e, progress.Interrupted) else progress.Interrupted.of(e)
            print(stop.message(), file=sys.stderr, flush=True)
            return stop.exit_status
    failed = ret.status == JobStatus.FAILED
    if failed:
        try:
            traceback.print_exception(ret._return_value, file=sys.stderr)
        except OSError:  # the log (stderr) cannot be written: a full disk
            pass
    try:
        data = cloudpickle.dumps(ret)
    except Exception as e:  # noqa: BLE001 - a return value (or exception) that cannot be pickled
        ret.return_value = RuntimeError(f"{ret._return_value!r}") if failed else repr(ret._return_value)
        print(f"fewshot-eval: the job's return value cannot be sent back ({e}); sent as text", file=sys.stderr)
        data = cloudpickle.dumps(ret)
    try:
        write_bytes(out, data)
    except OSError:  # a full disk: the sweep learns it from the exit status (its log may be unwritable too)
        return EXIT_UNWRITABLE
    return 1 if failed else 0


def die_with_sweep() -> None:
    """End this job process when the sweep that started it dies, SIGKILL included (it leads its own
    session, so a signal to the sweep's process group does not reach it): on Linux the kernel sends it
    SIGTERM (``PR_SET_PDEATHSIG``), which stops the job as the sweep's own SIGTERM would. A sweep
    already gone by now (``FEWSHOT_SWEEP_PID`` is not the parent any more): exit at once."""
    import os
    import signal

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    sweep = os.environ.get(SWEEP_PID_ENV)
    if sweep and sweep.isdigit() and os.getppid() != int(sweep):
        sys.exit(128 + int(signal.SIGTERM))


if __name__ == "__main__":
    die_with_sweep()
    sys.exit(run(*map(Path, sys.argv[1:4])))

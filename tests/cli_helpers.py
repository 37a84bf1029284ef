"""Helpers for the tests: run the real CLI in a subprocess; fixtures for a launch dir and a user config dir;
the documents of a trial (to rebuild its expected prompts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_SESSION_ENV = dict(os.environ)  # the fork server's environment (below): the session's, not a test's


def run_cli(args: Sequence[str], cwd: Path, check: bool = True, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m fewshot_eval ARGS`` in ``cwd``, in a new process; on unexpected failure the output is shown.
    The process is forked from a server that has imported torch, transformers and Hydra (tests/cli_zygote.py)
    unless its environment differs from the server's where that matters: then it is a plain subprocess."""
    full_env = {**os.environ, **(env or {})}
    zygote = _zygote(full_env)
    proc = zygote.run(list(args), cwd, full_env, timeout) if zygote else None
    if proc is None:
        proc = subprocess.run([sys.executable, "-m", "fewshot_eval", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
    return proc


# Variables that the modules the fork server preloads do not read when imported: they may differ between
# the server and a run forked from it (a run sees its own values). Any other difference: a plain subprocess.
SAFE_PREFIXES = ("FEWSHOT_", "SLURM_", "PYTEST_", "SUBMITIT_")


class _Zygote:
    """The fork server of tests/cli_zygote.py, started on first use, ended with the test session."""

    def __init__(self) -> None:
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="fse-zygote-"))
        self.socket = self.dir / "socket"
        self.env = _SESSION_ENV
        with open(self.dir / "server.log", "wb") as log:
            self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cli_zygote.py")), str(self.socket)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=self.env)
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"tests/cli_zygote.py did not start (exit {self.proc.wait()}): {_read(self.dir / 'server.log')}")

    def fits(self, env: dict) -> bool:
        keys = {k for k in env.keys() | self.env.keys() if env.get(k) != self.env.get(k)}
        return self.proc.poll() is None and all(k.startswith(SAFE_PREFIXES) for k in keys)

    def run(self, args: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess | None:
        """The run's outcome, as subprocess.run's; None if the server cannot be reached (nothing ran)."""
        import json
        import socket
        import time
        import uuid

        name = uuid.uuid4().hex  # runs may overlap (tests that run sweeps side by side)
        out, err = self.dir / f"{name}.out", self.dir / f"{name}.err"
        cmd = [sys.executable, "-m", "fewshot_eval", *args]
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.socket))
            except OSError:
                return None
            s.sendall((json.dumps({"args": args, "cwd": str(Path(cwd).resolve()), "env": env, "stdout": str(out), "stderr": str(err)}) + "\n").encode())
            s.settimeout(120)
            f = s.makefile("rb")
            started = f.readline()
            if not started.startswith(b"pid "):
                return None
            pid = int(started.split()[1])
            s.settimeout(max(deadline - time.monotonic(), 0.1))
            try:
                line = f.readline()
            except TimeoutError:
                line = b""
            if not line.startswith(b"exit "):  # timed out (or the server went away): end the run as subprocess.run does
                import contextlib
                import signal

                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(cmd, timeout, _read(out), _read(err))
            code = int(line.split()[1])
        return subprocess.CompletedProcess(cmd, code, _read(out), _read(err))

    def close(self) -> None:
        import shutil

        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def _read(path: Path) -> str:
    text = path.read_bytes().decode(errors="replace") if path.exists() else ""
    path.unlink(missing_ok=True)
    return text


_ZYGOTE: list[_Zygote | None] = []


def _zygote(env: dict) -> _Zygote | None:
    """The fork server if ``env`` fits it (started now if there is none); None: use a plain subprocess."""
    if os.environ.get("FEWSHOT_TEST_FRESH_PROCESS") or env.get("FEWSHOT_TEST_FRESH_PROCESS"):
        return None
    if not _ZYGOTE:
        import atexit

        try:
            _ZYGOTE.append(_Zygote())
            atexit.register(_ZYGOTE[0].close)
        except (OSError, RuntimeError) as e:  # only slower without it
            print(f"cli_helpers: no fork server, plain subprocesses: {e}", file=sys.stderr)
            _ZYGOTE.append(None)
    return _ZYGOTE[0] if _ZYGOTE[0] and _ZYGOTE[0].fits(env) else None


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory to launch from (not the repo), with results under ./results."""
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture
def user_conf(tmp_path: Path) -> Path:
    """A user config dir (``--config-dir``) with a few cheap settings of its own."""
    d = tmp_path / "userconf"
    (d / "model").mkdir(parents=True)
    (d / "task").mkdir()
    (d / "models").mkdir()
    (d / "model" / "my_random.yaml").write_text("name: my_random\npredictor: random\nmax_parallel: 2\n")
    (d / "task" / "my_copa.yaml").write_text("run_name: mine\ntasks: [copa_demo]\n")
    (d / "models" / "mine.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      model: my_random,majority\n"
    )
    return d


def unloadable_weights(path: Path) -> Path:
    """A weights dir that passes the planning checks (config.json is a JSON object, a weight file is there)
    but that transformers cannot load: the config.json names no model_type."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_text("not safetensors")
    return path


def broken_model_conf(tmp_path: Path) -> Path:
    """A config dir with model 'broken': its weights dir passes the planning checks (a JSON config.json and a
    weight file) but cannot be loaded (the config.json names no model_type), so its jobs fail at run time."""
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    weights = unloadable_weights(tmp_path / "weights")
    (conf / "model" / "broken.yaml").write_text(f"name: broken\npredictor: clm\nweights: {weights}\n")
    return conf


def trial_docs(result, task_name: str, params: dict, template: str = "default") -> tuple:
    """``(task, tmpl, eval_docs, demo_docs)`` of ``result``, a trial of ``task_name`` run with ``params``:
    the task definition, its template, the evaluated documents in order and the trial's shared
    demonstration documents (from ``result.info["demonstrations"]``)."""
    from fewshot_eval.evaluate.tasks.definitions import load_task_def
    from fewshot_eval.evaluate.tasks.selection import split_data

    task = load_task_def(task_name)
    tmpl = task.templates[template]
    eval_docs, pool = split_data(task, params, None, None)
    by_id = {d["_id"]: d for d in pool}
    demo_docs = [by_id[i] for i in result.info["demonstrations"][f"{task_name}.{template}"]["ids"]]
    return task, tmpl, eval_docs, demo_docs


def default_stop_signals() -> None:
    """In the child, before exec: Ctrl-C, SIGTERM and SIGHUP with their default disposition, as an interactive
    shell starts a command -- whatever this test process inherited (``nohup pytest ... &`` ignores SIGINT and
    SIGHUP, and the app rightly keeps an ignored signal ignored)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)

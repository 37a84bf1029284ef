"""Helpers for the tests: run the real CLI in a subprocess; fixtures for a launch dir and a user config dir;
the documents of a trial (to rebuild its expected prompts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def run_cli(args: Sequence[str], cwd: Path, check: bool = True, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m fewshot_eval ARGS`` in ``cwd``; on unexpected failure the output is shown."""
    proc = subprocess.run(
        [sys.executable, "-m", "fewshot_eval", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
    return proc


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

"""Every built-in metric lives in ``fewshot_eval/evaluate/metrics/``, whose modules register
themselves when the package is imported (no list to edit), and see rows and labels only."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import fewshot_eval.evaluate.metrics as metrics_pkg
from fewshot_eval.evaluate.registry import BUILTIN_MODULES, metric, metric_names

METRICS_DIR = Path(metrics_pkg.__file__).parent
# what a metric module may import of this project: nothing of tasks, backends or the evaluator
ALLOWED = ("fewshot_eval.config", "fewshot_eval.evaluate.registry", "fewshot_eval.evaluate.metrics")


def test_every_builtin_metric_is_defined_in_the_metrics_package() -> None:
    outside = {n: metric(n).fn.__module__ for n in metric_names() if not metric(n).fn.__module__.startswith("fewshot_eval.evaluate.metrics.")}
    assert not outside, f"metrics registered outside evaluate/metrics/: {outside}"
    assert [m for m in BUILTIN_MODULES if ".metrics" in m] == ["fewshot_eval.evaluate.metrics"]  # the package, once


def test_importing_the_package_registers_every_module_in_it() -> None:
    """In a fresh process: importing the package (no registry list) imports each of its modules
    and registers their metrics."""
    code = (
        "import json, sys, fewshot_eval.evaluate.metrics; from fewshot_eval.evaluate import registry; "
        "print(json.dumps([sorted(m for m in sys.modules if m.startswith('fewshot_eval.evaluate.metrics.')), sorted(registry._METRICS)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    modules, registered = json.loads(out)
    files = sorted(f"fewshot_eval.evaluate.metrics.{p.stem}" for p in METRICS_DIR.glob("*.py") if not p.stem.startswith("_"))
    assert modules == files
    assert registered == metric_names()  # everything the registry knows, without load_plugins()


def test_metric_modules_import_no_task_backend_or_evaluator_module() -> None:
    bad = []
    for f in sorted(METRICS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{f.name}: {n}" for n in names if n.startswith("fewshot_eval") and not n.startswith(ALLOWED)]
    assert not bad, bad

"""One job's path from the command line to results.json, by folder: how often it crosses a folder boundary.

    python benchmarks/trace_job_path.py            # one local job: model=random task=copa_demo nshot=0

Runs the sweep in this process under ``sys.setprofile`` and labels every called function by its
folder: ``fewshot_eval`` (top-level modules: cli, app, config ...), ``plan``, ``launch``, ``run``,
``evaluate``, ``store``, ``report``, ``hydra_plugins`` and Hydra itself (``hydra``); other libraries
are not labelled (their calls count for the nearest labelled caller).

* **stack**: the call stack at the moment ``results.json`` is written, folders in order with repeats
  collapsed -- the job's own path. A *crossing* is a change of folder; a *revisit* a crossing into a
  folder that is already on the path.
* **edges**: the distinct folder -> folder calls over the whole run (planning, launching, the job).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]


def label(filename: str) -> Optional[str]:
    p = Path(filename)
    parts = p.parts
    if "fewshot_eval_plugins" in parts:
        return "hydra_plugins"
    if "fewshot_eval" in parts:
        rest = parts[len(parts) - 1 - parts[::-1].index("fewshot_eval") + 1:]
        return rest[0] if len(rest) > 1 else "fewshot_eval"
    if "hydra" in parts and "site-packages" in parts:
        return "hydra"
    return None


def chain(labels: list[str]) -> list[str]:
    out: list[str] = []
    for lab in labels:
        if not out or out[-1] != lab:
            out.append(lab)
    return out


def crossings(path: list[str]) -> tuple[int, int]:
    seen = {path[0]} if path else set()
    revisits = 0
    for lab in path[1:]:
        revisits += lab in seen
        seen.add(lab)
    return max(0, len(path) - 1), revisits


def main() -> None:
    out = tempfile.mkdtemp()
    argv = ["-m", "model=random", "task=copa_demo", "nshot=0", f"output_dir={out}"]
    stack_at_write: list[str] = []
    tour: list[tuple[str, str]] = []
    seen_edges: set[tuple[Any, Any]] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        callee = label(frame.f_code.co_filename)
        if callee is None:
            return
        caller_frame = frame.f_back
        while caller_frame is not None and label(caller_frame.f_code.co_filename) is None:
            caller_frame = caller_frame.f_back
        if caller_frame is not None:
            caller = label(caller_frame.f_code.co_filename)
            if caller != callee and (caller_frame.f_code, frame.f_code) not in seen_edges:
                seen_edges.add((caller_frame.f_code, frame.f_code))
                tour.append((caller, callee))  # type: ignore[arg-type]
        if frame.f_code.co_name == "write_results" and callee == "store" and not stack_at_write:
            f, labels = frame, []
            while f is not None:
                lab = label(f.f_code.co_filename)
                if lab:
                    labels.append(lab)
                f = f.f_back
            stack_at_write.extend(reversed(labels))

    from fewshot_eval import cli

    old, old_argv = os.getcwd(), sys.argv
    os.chdir(out)
    sys.argv = ["fewshot-eval", *argv]  # run_hydra reads sys.argv
    sys.setprofile(profile)
    try:
        cli.main()
    except SystemExit as e:
        code = e.code
    finally:
        sys.setprofile(None)
        os.chdir(old)
        sys.argv = old_argv
    path = chain(stack_at_write)
    n, r = crossings(path)
    print(f"exit {code}")
    print(f"stack at results.json: {' -> '.join(path)}")
    print(f"  {n} crossings, {r} back into a folder already on the path")
    edges = sorted(set(tour))
    print(f"edges: {len(edges)} distinct folder -> folder calls: {', '.join(f'{a}->{b}' for a, b in edges)}")


if __name__ == "__main__":
    main()

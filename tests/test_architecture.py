"""Dependencies go one way along the pipeline (plan -> launch -> run -> evaluate -> store -> report)
and there are no import cycles, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fewshot_eval"

# Shared modules every stage may use; they use no stage themselves.
SHARED = {"config", "settings", "outcome", "progress", "searchpath"}
# stage -> stages it must not import
FORBIDDEN = {
    "store": {"plan", "launch", "run", "evaluate", "report", "app", "cli", "commands"},
    "evaluate": {"plan", "launch", "run", "report", "app", "cli", "commands"},
    "plan": {"launch", "run", "report", "app", "cli", "commands"},
    "launch": {"run", "report", "app", "cli", "commands"},
    "run": {"launch", "report", "app", "cli", "commands"},
    "report": {"launch", "run", "app", "cli"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import in the file, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


def graph() -> dict[str, set[str]]:
    files = list(PKG.rglob("*.py")) + list((ROOT / "hydra_plugins" / "fewshot_eval_plugins").glob("*.py"))
    mods = {module_name(f): f for f in files}
    g: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for target, names in imports(f):
            if not target.startswith(("fewshot_eval", "hydra_plugins.fewshot_eval_plugins")):
                continue
            for name in names or [""]:  # `from fewshot_eval.store import layout` imports the module fewshot_eval.store.layout
                full = f"{target}.{name}" if name and f"{target}.{name}" in mods else target
                if full in mods and full != m:
                    g[m].add(full)
    return g


def stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "fewshot_eval" or len(parts) < 2:
        return None
    return parts[1]


def test_no_import_cycles() -> None:
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                if not all(c == n or c.startswith(n + ".") or n.startswith(c + ".") for c in cycle):  # a package and its own modules
                    raise AssertionError("import cycle: " + " -> ".join(cycle))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_stages_import_only_forward() -> None:
    bad = []
    for m, targets in graph().items():
        s = stage(m)
        for t in targets:
            ts = stage(t)
            if s in SHARED and ts not in SHARED and ts is not None:
                bad.append(f"{m} -> {t} (a shared module uses a stage)")
            elif s in FORBIDDEN and ts in FORBIDDEN[s]:
                bad.append(f"{m} -> {t}")
    assert not bad, "back-edges:\n" + "\n".join(sorted(bad))


def test_report_uses_only_public_names_of_plan() -> None:
    for f in (PKG / "report").glob("*.py"):
        for target, names in imports(f):
            if target.startswith("fewshot_eval.plan"):
                assert not [n for n in names if n.startswith("_")], f"{f.name} imports private names of {target}: {names}"

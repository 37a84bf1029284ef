"""Dependencies go one way along the pipeline (plan -> launch -> run -> evaluate -> store -> report)
and there are no import cycles, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fewshot_eval"

# Shared modules every stage may use; they use no stage themselves.
SHARED = {"config", "settings", "param_schema", "outcome", "progress", "searchpath", "faults"}
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


BACKENDS = PKG / "evaluate" / "backends"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module and its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def _schema_default(tree: ast.AST) -> set[int]:
    """id of the default of ``ModelSetting.predictor``: the config's default predictor (the schema is the config)."""
    return {id(stmt.value) for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == "ModelSetting"
            for stmt in node.body if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            and stmt.target.id == "predictor" and stmt.value is not None}


def predictor_names_outside_backends() -> list[str]:
    """``file:line 'name'`` for each string literal (docstrings and comments aside) that is a built-in
    predictor's registered name, in a module outside ``fewshot_eval/evaluate/backends/``."""
    from fewshot_eval.evaluate.registry import predictor_class, predictor_names

    names = {n for n in predictor_names() if predictor_class(n).__module__.startswith("fewshot_eval.evaluate.backends.")}
    assert {"clm", "vllm", "openai_completions", "random", "majority"} <= names  # the check sees the built-ins
    files = list(PKG.rglob("*.py")) + list((ROOT / "hydra_plugins" / "fewshot_eval_plugins").glob("*.py"))
    hits = []
    for f in sorted(files):
        if BACKENDS in f.parents:
            continue
        tree = ast.parse(f.read_text())
        skip = _docstrings(tree) | _schema_default(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in skip:
                hits.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    return hits


def test_no_predictor_name_outside_its_package() -> None:
    """Only ``evaluate/backends/`` names a predictor; elsewhere a capability of its class is asked
    (``registry.predictor_capability(name, "loads_hf_weights")``, ``predictor_class(name).uses_gpus``),
    so a new predictor needs no edit outside its package. The default predictor lives in the config
    (the schema ``settings.ModelSetting``)."""
    hits = predictor_names_outside_backends()
    assert not hits, "predictor names outside evaluate/backends/ (ask the class for a capability instead):\n" + "\n".join(hits)


def test_no_module_name_used_twice() -> None:
    """Every module file name is unique across ``fewshot_eval/`` and the Hydra plugins (``__init__``
    aside), so a name says which file is meant: no ``checks.py`` in two stages."""
    files = list(PKG.rglob("*.py")) + list((ROOT / "hydra_plugins" / "fewshot_eval_plugins").glob("*.py"))
    seen: dict[str, list[str]] = {}
    for f in files:
        if f.name != "__init__.py" and "__pycache__" not in f.parts:
            seen.setdefault(f.name, []).append(str(f.relative_to(ROOT)))
    twins = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not twins, f"module names used twice: {twins}"


# The layers inside the evaluate stage, lowest first: a module may import its own layer and the ones
# before it, never a later one. The registry, the trial result and the hub cache are the base; metrics, scoring and
# calibration are pure functions of rows; backends score requests; the lm-eval bridge builds requests
# from lm-eval's tasks; tasks build our own; the evaluator (and what wraps it) runs a trial.
EVALUATE_LAYERS: list[set[str]] = [
    {"registry", "trial_result", "hub_cache"},
    {"metrics", "scoring", "calibration"},
    {"backends"},
    {"lm_eval_bridge"},
    {"tasks"},
    {"evaluator", "rescoring", "resume", ""},  # "": the package's own __init__ (build_evaluator ...)
]


def evaluate_layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["fewshot_eval", "evaluate"]:
        return None
    part = parts[2] if len(parts) > 2 else ""
    for i, layer in enumerate(EVALUATE_LAYERS):
        if part in layer:
            return i
    raise AssertionError(f"{module}: a module of evaluate/ in no layer of EVALUATE_LAYERS (tests/test_architecture.py) -- add it")


def test_evaluate_sub_packages_import_only_lower_layers() -> None:
    bad = []
    for m, targets in graph().items():
        a = evaluate_layer(m)
        for t in targets:
            b = evaluate_layer(t)
            if a is not None and b is not None and b > a:
                bad.append(f"{m} -> {t}")
    assert not bad, "evaluate/ imports against its layers (" + " < ".join("|".join(sorted(x)) for x in EVALUATE_LAYERS) + "):\n" + "\n".join(sorted(bad))

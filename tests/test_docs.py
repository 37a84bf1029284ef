"""The documentation runs: every ```bash / ```shell and ```yaml block of README.md and docs/*.md is
checked, so the docs cannot drift from the code (like submitit's ``test_documentation.py``).

* Shell blocks run as shown, offline, with the installed ``fewshot-eval`` first on PATH. The blocks
  of one page run in order in one temp dir, as one shell session (the working dir and exported
  variables carry over from block to block), so files a walk-through writes are there for its
  next steps.
* YAML blocks are parsed. A first line ``# conf/<...>.yaml`` names a packaged file: the block must
  equal it, or be a subset of it when the line says ``(abridged)``. A first line naming a file of
  your own config dir (``# myconf/model/x.yaml``, any ``<dir>/<group>/<name>.yaml``) is validated as
  the app validates that group (model/task setting schema, task-definition parser, experiment and
  preset planned) and written into the page's temp dir, where the page's later blocks use it.
* Links resolve to an existing file / heading; repo paths and ``fewshot_eval.*`` names exist.

A block is steered by an HTML comment on the line before it (several directives: ``;``-separated)::

    <!-- doc-test: plan-only -->                     fewshot-eval's sweeps get dry_run=true appended
    <!-- doc-test: exit 2 (why it fails) -->         the block must end with this status (one command)
    <!-- doc-test: skip (reason) -->                 not run (its bash syntax and repo paths are checked)

Run: ``.venv/bin/python -m pytest -q tests/test_docs.py`` (prints how many blocks ran / planned / skipped).
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent  # the venv whose fewshot-eval the docs run
DIRECTIVE = re.compile(r"^<!--\s*doc-test:\s*(.*?)\s*-->$")
SEMICOLON = re.compile(r";(?![^()]*\))")  # separates directives; a reason in parentheses may hold one
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SHELL_LANGS = ("bash", "shell", "sh")
BLOCK_TIMEOUT_S = 300
SUBCOMMANDS = ("report", "status", "list", "recalc", "verify")
# Config groups a YAML block of the user's own config dir may name (<dir>/<group>/<name>.yaml).
USER_GROUPS = ("model", "task", "task_def", "models", "tasks", "experiment", "lm_eval_tasks", "site")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directives: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}:{self.lang}"

    def directive(self, name: str) -> Optional[str]:
        """The directive ``name`` (its argument, or '' when it has none), or None."""
        for d in self.directives:
            if d == name or d.startswith(name + " ") or d.startswith(name + "("):
                return d[len(name):].strip()
        return None


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a markdown page, with the doc-test directives before them."""
    out: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(2):
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        d = DIRECTIVE.match(prev)
        directives = [x.strip() for x in SEMICOLON.split(d.group(1))] if d else []
        out.append(Block(page, start + 1, lang, "\n".join(body) + "\n", directives))
        i += 1
    return out


ALL = [b for p in PAGES for b in blocks(p) if b.lang in (*SHELL_LANGS, "yaml")]
_counts: Counter = Counter()
_failed_pages: set[Path] = set()


# ---------------------------------------------------------------- one temp dir per page

@pytest.fixture(scope="module")
def page_dirs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[dict[Path, Path]]:
    dirs: dict[Path, Path] = {}
    yield dirs
    tr = request.config.pluginmanager.getplugin("terminalreporter")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if tr is not None and capman is not None and _counts:
        with capman.global_and_fixture_disabled():  # the count of blocks, shown without -s too
            tr.write_line("")
            tr.write_line(f"docs: {sum(_counts.values())} blocks checked -- " + ", ".join(f"{n} {k}" for k, n in sorted(_counts.items())))


def page_dir(dirs: dict[Path, Path], page: Path, factory: pytest.TempPathFactory) -> Path:
    if page not in dirs:
        d = factory.mktemp(page.stem)
        (d / ".doc-test").mkdir()
        (d / "work").mkdir()
        (d / ".doc-test" / "cwd").write_text(str(d / "work"))
        dirs[page] = d
    return dirs[page]


def env(root: Path) -> dict[str, str]:
    """Offline, with an empty HuggingFace cache of the page's own (as on a fresh machine)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("FEWSHOT_EVAL_CONFIG_DIRS", "PYTEST", "HF_HUB_CACHE", "HF_DATASETS_CACHE"))}
    e.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(root / ".doc-test" / "hf-home"),
             PATH=f"{BIN}{os.pathsep}{e.get('PATH', '')}")
    e.pop("FEWSHOT_WEIGHTS_DIR", None)
    e.pop("FEWSHOT_HF_MIRROR", None)
    return e


PLAN_ONLY = """fewshot-eval() {  # doc-test plan-only: sweeps only plan
  case "${1:-}" in report|status|list|recalc|verify) command fewshot-eval "$@" ;; *) command fewshot-eval "$@" dry_run=true ;; esac
}
"""


def script(block: Block, state: Path) -> str:
    """The block as one bash script that resumes the page's session (cwd, exported variables)."""
    head = f"""[ -f {shlex.quote(str(state / 'env.sh'))} ] && source {shlex.quote(str(state / 'env.sh'))} 2>/dev/null
cd "$(cat {shlex.quote(str(state / 'cwd'))})"
trap 'export -p > {shlex.quote(str(state / 'env.sh'))}; pwd > {shlex.quote(str(state / 'cwd'))}' EXIT
set -eo pipefail
"""
    return head + (PLAN_ONLY if block.directive("plan-only") is not None else "") + block.text


def run_shell(block: Block, root: Path) -> None:
    skip = block.directive("skip")
    check_bash_syntax(block)
    if skip is not None:
        assert skip.startswith("(") and skip.endswith(")") and len(skip) > 4, f"{block.id}: a skip needs a reason: skip (why)"
        _counts["skipped"] += 1
        pytest.skip(f"{block.id}: {skip[1:-1]}")
    assert (BIN / "fewshot-eval").exists(), f"{BIN}/fewshot-eval is missing: install the package into this Python (pip install -e .)"
    expected = 0
    code = block.directive("exit")
    if code is not None:
        expected = int(code.split()[0])
        commands = [ln for ln in block.text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        assert len(commands) == 1, f"{block.id}: a block with an expected exit status holds one command, not {len(commands)}"
    proc = subprocess.run(["bash", "-c", script(block, root / ".doc-test")], capture_output=True, text=True, env=env(root),
                          timeout=BLOCK_TIMEOUT_S)
    out = f"--- block ({block.id}):\n{block.text}--- stdout:\n{proc.stdout[-6000:]}\n--- stderr:\n{proc.stderr[-6000:]}"
    assert proc.returncode == expected, f"exit {proc.returncode}, expected {expected}\n{out}"
    assert "Traceback (most recent call last)" not in proc.stderr, f"a traceback\n{out}"
    _counts["planned (dry run)" if block.directive("plan-only") is not None else "ran"] += 1


def check_bash_syntax(block: Block) -> None:
    proc = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
    assert proc.returncode == 0, f"{block.id}: not valid bash: {proc.stderr}"


# ---------------------------------------------------------------- YAML blocks

def file_named(block: Block) -> tuple[Optional[str], bool]:
    """(the file a YAML block's first line names, whether it says '(abridged)')."""
    first = block.text.splitlines()[0].strip() if block.text.strip() else ""
    m = re.match(r"#\s*(\S+\.yaml)\b(.*)$", first)
    return (m.group(1), "(abridged)" in m.group(2)) if m else (None, False)


def subset(part: Any, whole: Any, at: str = "") -> Optional[str]:
    """Where ``part`` (an abridged copy) differs from ``whole``, or None."""
    if isinstance(part, dict):
        if not isinstance(whole, dict):
            return f"{at or '/'}: a mapping in the doc, {whole!r} in the file"
        for k, v in part.items():
            if k not in whole:
                return f"{at}{k}: not in the file"
            bad = subset(v, whole[k], f"{at}{k}.")
            if bad:
                return bad
        return None
    return None if part == whole else f"{at.rstrip('.')}: {part!r} in the doc, {whole!r} in the file"


def check_yaml(block: Block, root: Path) -> None:
    try:
        data = yaml.safe_load(block.text)
    except yaml.YAMLError as e:
        raise AssertionError(f"{block.id}: not valid YAML: {e}") from None
    name, abridged = file_named(block)
    _counts["yaml"] += 1
    if name is None:
        return
    if name.startswith("conf/"):
        packaged = ROOT / name
        assert packaged.is_file(), f"{block.id}: names {name}, which is not a packaged file (a file of your own: myconf/...)"
        whole = yaml.safe_load(packaged.read_text())
        diff = subset(data, whole) if abridged else (None if data == whole else "differs (mark it '(abridged)' if it leaves keys out)")
        assert diff is None, f"{block.id}: {name}: {diff}"
        return
    validate_user_file(block, name, data, root)


def validate_user_file(block: Block, name: str, data: Any, root: Path) -> None:
    """A file of the user's config dir: validated as the app validates its group, then written."""
    from fewshot_eval.settings import model_setting, task_setting

    rel = Path(name)
    assert not rel.is_absolute() and ".." not in rel.parts and len(rel.parts) >= 3, f"{block.id}: {name}: expected <config dir>/<group>/<name>.yaml"
    group, key = rel.parts[-2], rel.stem
    assert group in USER_GROUPS, f"{block.id}: {name}: '{group}' is not a config group ({', '.join(USER_GROUPS)})"
    cwd = Path((root / ".doc-test" / "cwd").read_text().strip())
    target = cwd / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(block.text)
    confdir = target.parents[1]
    if group == "model":
        model_setting(data, key)
    elif group == "task":
        task_setting(data, key)
    elif group == "task_def":
        with plugins_of(confdir):
            from fewshot_eval.evaluate.tasks.definitions import parse_task_def

            parse_task_def(key, target, data)
    elif group == "site":
        from fewshot_eval.launch.slurm.site_profiles import load_profile

        load_profile(key, target)
    elif group in ("models", "tasks", "experiment"):
        assert block.text.splitlines()[1:2] == ["# @package _global_"], f"{block.id}: {name}: line 2 must be '# @package _global_'"
        from fewshot_eval.api import plan

        selection = f"experiment={key}" if group == "experiment" else f"{group}={key}"
        plan([selection, f"output_dir={cwd / 'results'}"], [confdir])  # a ConfigError fails the test


class plugins_of:
    """Load ``<confdir>/plugins/*.py`` for a validation, then restore the registry as it was."""

    def __init__(self, confdir: Path) -> None:
        self.confdir = confdir

    def __enter__(self) -> None:
        from fewshot_eval.evaluate import registry

        registry.load_plugins()
        self.saved = (dict(registry._PREDICTORS), dict(registry._METRICS), set(registry._loaded))
        registry.load_plugins([self.confdir])

    def __exit__(self, *exc: Any) -> None:
        from fewshot_eval.evaluate import registry

        for table, saved in zip((registry._PREDICTORS, registry._METRICS, registry._loaded), self.saved):
            table.clear()
            table.update(saved)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the blocks, in page order

@pytest.mark.slow
@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_doc_block(block: Block, page_dirs: dict[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    root = page_dir(page_dirs, block.page, tmp_path_factory)
    if block.page in _failed_pages and block.directive("skip") is None:
        pytest.skip(f"an earlier block of {block.page.name} failed")
    try:
        if block.lang == "yaml":
            check_yaml(block, root)
        else:
            run_shell(block, root)
    except AssertionError:
        _failed_pages.add(block.page)
        raise
    except Exception as e:  # a ConfigError of a validation: name the block
        _failed_pages.add(block.page)
        raise AssertionError(f"{block.id}: {type(e).__name__}: {e}") from None


def test_every_directive_is_known() -> None:
    known = ("plan-only", "exit", "skip")
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            m = DIRECTIVE.match(line.strip())
            if m:
                for d in SEMICOLON.split(m.group(1)):
                    assert d.strip().split(" ")[0].split("(")[0] in known, f"{page.name}:{n}: unknown doc-test directive {d!r}"


# ---------------------------------------------------------------- README and CI agree

def test_readme_setup_commands_are_what_ci_runs() -> None:
    """.ci/run runs the README's two set-up commands: each is a line of the README's first shell block."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = []
    for n in (1, 2):
        at = next(i for i, ln in enumerate(ci) if ln.startswith(f"# README, set-up command {n}"))
        commands.append(next(ln for ln in ci[at + 1:] if ln.strip() and not ln.startswith("#")))
    setup = next(b for b in blocks(ROOT / "README.md") if b.lang in SHELL_LANGS)
    lines = setup.text.splitlines()
    for c in commands:
        assert c in lines, f"README's set-up block lacks .ci/run's command (keep them byte-identical):\n{c}"


def test_readme_is_short() -> None:
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 160, f"README.md has {n} lines: keep it short, move details to docs/"


def test_one_command_name() -> None:
    for page in PAGES:
        assert "python -m fewshot_eval" not in page.read_text(), f"{page.name}: say fewshot-eval, not python -m fewshot_eval"


# ---------------------------------------------------------------- links and names resolve

LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    out: set[str] = set()
    seen: Counter = Counter()
    in_code = False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            s = slug(line.lstrip("#"))
            out.add(s if not seen[s] else f"{s}-{seen[s]}")
            seen[s] += 1
    return out


def prose(page: Path) -> str:
    """The page without its code blocks and inline code."""
    text = re.sub(r"^\s*```.*?^\s*```", "", page.read_text(), flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def test_links_resolve() -> None:
    bad = []
    for page in PAGES:
        for _, target in LINK.findall(prose(page)):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                bad.append(f"{page.name}: ({target}): {dest} does not exist")
            elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
                bad.append(f"{page.name}: ({target}): no heading #{anchor} in {dest.name}")
    assert not bad, "\n".join(bad)


def test_docs_pages_are_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert not missing, f"README.md links no docs page {missing}"


REPO_PATH = re.compile(r"(?<![\w./$-])((?:fewshot_eval|hydra_plugins|conf|tests|benchmarks|\.ci|docs)/[\w./-]*[\w/])")
DOTTED = re.compile(r"(?<![\w./-])(fewshot_eval(?:\.\w+)+)")
NOT_MODULES = {"fewshot_eval.plugins"}  # the entry point group of plugins


def test_repo_paths_and_module_names_exist() -> None:
    """Paths into the repo (fewshot_eval/..., conf/..., tests/...) and dotted names (fewshot_eval.x.y)."""
    bad = []
    for page in PAGES:
        text = page.read_text()
        for path in sorted(set(REPO_PATH.findall(text))):
            if not (ROOT / path).exists():
                bad.append(f"{page.name}: {path} does not exist")
        for name in sorted(set(DOTTED.findall(text)) - NOT_MODULES):
            if not resolves(name):
                bad.append(f"{page.name}: {name} is not a module or a name in one")
    assert not bad, "\n".join(bad)


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


# ---------------------------------------------------------------- every key has a row

def table_keys(page: str, heading: str) -> set[str]:
    """The backticked names in the first column of the tables under ``heading`` (up to the next heading)."""
    text = re.sub(r"^```.*?^```", "", (ROOT / "docs" / page).read_text(), flags=re.M | re.S)  # code blocks hold '# ' lines
    start = text.index(f"\n{heading}\n")
    section = re.split(r"\n#{1,6} ", text[start + len(heading) + 2:])[0]
    first = [ln.split("|")[1] for ln in section.splitlines() if ln.startswith("| ")]
    return {k.split(".")[0] for cell in first for k in re.findall(r"`([\w.]+)`", cell)}


def test_every_task_definition_key_is_documented() -> None:
    """docs/task-format.md has a row for every key the task-definition parser accepts."""
    from dataclasses import fields

    from fewshot_eval.evaluate.tasks import definitions, shapes

    top = set(definitions._TOP_KEYS)  # the parser's key list (key -> required)
    missing = top - table_keys("task-format.md", "## Every key")
    assert not missing, f"docs/task-format.md '## Every key' lacks {sorted(missing)}"
    hf = {f.name for f in fields(definitions.HFSource)}
    assert not hf - table_keys("task-format.md", "## Data sources"), \
        f"data.hf keys undocumented: {sorted(hf - table_keys('task-format.md', '## Data sources'))}"
    tmpl = {k for keys in shapes._TEMPLATE_KEYS.values() for k in keys}
    assert not tmpl - table_keys("task-format.md", "## Templates"), f"template keys undocumented: {sorted(tmpl - table_keys('task-format.md', '## Templates'))}"


def test_every_model_setting_key_and_parameter_is_documented() -> None:
    """docs/configuration.md has a row for every model-setting key, task-setting key and evaluation parameter."""
    from dataclasses import fields

    from fewshot_eval.config import EVAL_KEYS
    from fewshot_eval.settings import ModelSetting, TaskSetting

    for schema, heading in ((ModelSetting, "## A model setting"), (TaskSetting, "## A task setting")):
        missing = {f.name for f in fields(schema)} - table_keys("configuration.md", heading)
        assert not missing, f"docs/configuration.md '{heading}' lacks {sorted(missing)}"
    missing = set(EVAL_KEYS) - table_keys("configuration.md", "## Evaluation parameters")
    assert not missing, f"docs/configuration.md '## Evaluation parameters' lacks {sorted(missing)}"

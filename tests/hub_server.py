"""A HuggingFace-hub-compatible server on loopback for the tests: olah (a self-hosted hub mirror, in its own
venv: tests/setup_hub_server.sh) serving local git repos laid out as the real hub repos are.

Repos (``<mirrors>/{models,datasets}/<org>/<name>``, branch main), built from the tiny GPT-2 and the
fixtures under tests/fixtures/hub/ (the bundled suites' real schemas):

* ``fewshot-test/tiny-gpt2``: the tiny GPT-2 at tag ``step1``, a retrained copy (other weights) at tag
  ``step2`` = main; ``fewshot-test/tiny-gpt2-h2``: the tiny GPT-2 with 2 attention heads;
* ``aps/super_glue`` (config copa) and ``wmt/wmt14`` (config fr-en): parquet files and a README
  declaring its configs, as on the hub -- WMT's with a training split that must never be fetched;
* ``Muennighoff/xwinograd``, ``juletxara/xstory_cloze``, ``mhardalov/exams``: a loading script on main
  (which datasets >= 4 refuses) and the data only on ``refs/convert/parquet`` (``<config>/<split>/0000.parquet``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional

HUB = Path(__file__).parent / "fixtures" / "hub"
GIT = ["git", "-c", "user.name=fixture", "-c", "user.email=fixture@fewshot", "-c", "init.defaultBranch=main"]
# hub repo -> configs (fixture dirs) served from refs/convert/parquet only
SCRIPT_DATASETS = {"Muennighoff/xwinograd": ["en", "fr"], "juletxara/xstory_cloze": ["en", "es"],
                   "mhardalov/exams": ["crosslingual_bg", "crosslingual_it"]}
TINY = "fewshot-test/tiny-gpt2"
TINY_H2 = "fewshot-test/tiny-gpt2-h2"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", message)
    return _git(repo, "rev-parse", "HEAD")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _parquet(rows: list[dict], path: Path) -> None:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path))


def _readme(configs: dict[str, dict[str, str]]) -> str:
    """A dataset card declaring its configs' data files, as the hub's parquet repos have."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {pattern}" for split, pattern in splits.items()]
    return "\n".join(lines) + "\n---\n# test copy\n"


def tiny_revisions(root: Path) -> dict[str, Path]:
    """Local copies of the model repos' revisions: ``step1`` (the tiny GPT-2), ``step2`` (other weights), ``h2``."""
    import torch
    from transformers import AutoModelForCausalLM

    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    out = {"step1": root / "step1", "step2": root / "step2", "h2": root / "h2"}
    if all((p / "config.json").is_file() for p in out.values()):
        return out
    shutil.copytree(tiny_gpt2_path(), out["step1"], dirs_exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(out["step1"])
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    shutil.copytree(out["step1"], out["step2"], dirs_exist_ok=True)
    model.save_pretrained(out["step2"])
    shutil.copytree(out["step1"], out["h2"], dirs_exist_ok=True)
    config = json.loads((out["h2"] / "config.json").read_text())
    (out["h2"] / "config.json").write_text(json.dumps({**config, "n_head": 2}, indent=2))
    return out


def build_repos(mirrors: Path, local_models: Path) -> None:
    """The model and dataset repos the server serves (see the module docstring)."""
    revs = tiny_revisions(local_models)
    m = mirrors / "models" / TINY
    m.mkdir(parents=True)
    _git(m, "init", "-q")
    for tag in ("step1", "step2"):
        for f in revs[tag].iterdir():
            shutil.copy(f, m / f.name)
        _commit(m, tag)
        _git(m, "tag", tag)
    h2 = mirrors / "models" / TINY_H2
    shutil.copytree(revs["h2"], h2)
    _git(h2, "init", "-q")
    (h2 / "flax_model.msgpack").write_bytes(b"not fetched: transformers reads the safetensors")
    _commit(h2, "h2")

    sg = mirrors / "datasets" / "aps" / "super_glue"
    for split in ("train", "validation"):
        _parquet(_rows(HUB / "aps/super_glue/copa" / f"{split}.jsonl"), sg / "copa" / f"{split}-00000-of-00001.parquet")
    _parquet([{**r, "label": -1} for r in _rows(HUB / "aps/super_glue/copa/validation.jsonl")], sg / "copa" / "test-00000-of-00001.parquet")
    (sg / "README.md").write_text(_readme({"copa": {s: f"copa/{s}-*" for s in ("train", "validation", "test")}}))
    _git(sg, "init", "-q")
    _commit(sg, "copa")

    wmt = mirrors / "datasets" / "wmt" / "wmt14"
    for split in ("validation", "test"):
        _parquet(_rows(HUB / "wmt/wmt14/fr-en" / f"{split}.jsonl"), wmt / "fr-en" / f"{split}-00000-of-00001.parquet")
    train = [{"translation": {"fr": f"Phrase d'entraînement {i}.", "en": f"Training sentence {i}."}} for i in range(200)]
    _parquet(train, wmt / "fr-en" / "train-00000-of-00001.parquet")
    (wmt / "README.md").write_text(_readme({"fr-en": {s: f"fr-en/{s}-*" for s in ("train", "validation", "test")}}))
    _git(wmt, "init", "-q")
    _commit(wmt, "wmt14 fr-en")

    for repo, configs in SCRIPT_DATASETS.items():
        d = mirrors / "datasets" / repo
        d.mkdir(parents=True)
        _git(d, "init", "-q")
        (d / f"{repo.split('/')[1]}.py").write_text("import datasets  # a loading script: datasets >= 4 refuses it\n")
        (d / "README.md").write_text(f"# {repo}\n")
        _commit(d, "loading script")
        _git(d, "checkout", "-q", "--orphan", "parquet-export")
        _git(d, "rm", "-rqf", ".")
        for config in configs:
            for split_file in sorted((HUB / repo / config).glob("*.jsonl")):
                _parquet(_rows(split_file), d / config / split_file.stem / "0000.parquet")
        _commit(d, "parquet conversion")
        _git(d, "update-ref", "refs/convert/parquet", "HEAD")
        _git(d, "checkout", "-q", "main")
        _git(d, "branch", "-D", "parquet-export")


def olah_python() -> tuple[Optional[str], Optional[str]]:
    """(the Python of a venv with olah, None) or (None, why there is none): ``$FEWSHOT_HUB_SERVER_PYTHON``, else
    the venv in the cache (``$FEWSHOT_EVAL_CACHE/olah-venv``), built by tests/setup_hub_server.sh when
    ``FEWSHOT_REQUIRE_HUB_SERVER=1`` (CI)."""
    from fewshot_eval.config import cache_dir

    def works(python: str) -> Optional[str]:
        p = subprocess.run([python, "-c", "import olah.server"], capture_output=True, text=True)
        return None if p.returncode == 0 else ((p.stderr.strip().splitlines() or ["?"])[-1])

    named = os.environ.get("FEWSHOT_HUB_SERVER_PYTHON")
    if named:
        why = works(named)
        return (named, None) if why is None else (None, f"{named}: {why}")
    python = cache_dir() / "olah-venv" / "bin" / "python"
    if python.exists() and works(str(python)) is None:
        return str(python), None
    if not os.environ.get("FEWSHOT_REQUIRE_HUB_SERVER"):
        return None, "FEWSHOT_HUB_SERVER_PYTHON is not set (bash tests/setup_hub_server.sh /opt/olah-venv makes a venv with olah)"
    built = subprocess.run(["bash", str(Path(__file__).with_name("setup_hub_server.sh")), str(python.parent.parent)],
                           capture_output=True, text=True, timeout=900)
    if built.returncode != 0:
        return None, f"tests/setup_hub_server.sh failed: {(built.stdout + built.stderr).strip()[-800:]}"
    return str(python), None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_hub(python: str, mirrors: Path, workdir: Path, timeout_s: float = 120) -> Iterator[str]:
    """olah serving ``mirrors`` offline (no upstream) on a free loopback port; yields its URL (for HF_ENDPOINT)."""
    import requests

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = workdir / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nmirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
        f'mirrors-path = ["{mirrors}"]\nrepos-path = "{workdir / "olah-repos"}"\n\n[accessibility]\noffline = true\n'
    )
    log = workdir / "olah.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH"))}
    with open(log, "w") as out:
        proc = subprocess.Popen([python, "-m", "olah.server", "-c", str(config), "--log-path", str(workdir / "olah-logs")],
                                cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if requests.get(f"{url}/api/models/{TINY}/revision/main", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"olah did not come up on {url}: {log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

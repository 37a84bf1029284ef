"""The HuggingFace hub code path against a real hub server on loopback (olah, tests/hub_server.py): prefetch on a
"login node", then a sweep whose jobs cannot reach any network, with the same numbers as from local files; the
script datasets and WMT loading from their real repository layout; a missing repo in one line.

olah runs from its own venv (``$FEWSHOT_HUB_SERVER_PYTHON``; tests/setup_hub_server.sh makes one). Without it
these tests skip, saying so; ``FEWSHOT_REQUIRE_HUB_SERVER=1`` (CI) builds the venv into the cache and makes a
server that does not come up a failure.

What olah cannot do, and how it is covered: its revision routes take no ``/`` in a revision, so
``dataset_info(revision="refs/convert/parquet")`` and ``snapshot_download(revision="refs/convert/parquet")``
get a 404 from it. fewshot-eval never asks that way: it resolves every revision through the repo's refs
list (``/api/datasets/<id>/refs``, which olah serves with its ``converts``) and fetches by commit, so the
parquet conversion is read from olah here, through the same code as from the hub.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_helpers import run_cli
from hub_server import HUB, TINY, TINY_H2, build_repos, free_port, olah_python, running_hub, tiny_revisions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> dict:
    python, why = olah_python()
    if python is None:
        why = f"no hub server to test against ({why})"
        if os.environ.get("FEWSHOT_REQUIRE_HUB_SERVER"):
            pytest.fail(why)
        pytest.skip(why)
    root = tmp_path_factory.mktemp("hub")
    build_repos(root / "mirrors", root / "local_models")
    with running_hub(python, root / "mirrors", root) as url:
        yield {"url": url, "root": root, "models": tiny_revisions(root / "local_models")}


def online(hub: dict, home: Path) -> dict:
    """The environment of a login node: the hub server reachable, offline mode off, a fresh HF cache."""
    return {"HF_ENDPOINT": hub["url"], "HF_HOME": str(home), "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", "FEWSHOT_HF_MIRROR": ""}


def conf(tmp_path: Path, models: dict[str, Path]) -> Path:
    """Two hub models (one a checkpoint sweep over two revisions) and their local copies."""
    d = tmp_path / "conf"
    (d / "model").mkdir(parents=True)
    (d / "model" / "hub_tiny.yaml").write_text(f"name: hub_tiny\nweights: {TINY}\ncheckpoints: {{revisions: [step1, step2]}}\n")
    (d / "model" / "hub_h2.yaml").write_text(f"name: hub_h2\nweights: {TINY_H2}\n")
    for key in ("step1", "step2", "h2"):
        (d / "model" / f"local_{key}.yaml").write_text(f"name: local_{key}\nweights: {models[key]}\n")
    (d / "model" / "hub_missing.yaml").write_text("name: hub_missing\nweights: fewshot-test/no-such-model\n")
    return d


SWEEP = ["task=copa,xwinograd,wmt14fren", "nshot=0", "n_eval_samples=3", "max_new_tokens=4",
         "languages={xwinograd: [en, fr]}", "device=cpu"]


def results(out: Path) -> dict[tuple[str, str], tuple[dict, dict]]:
    """(model name, task setting) -> (metrics, predictions files' rows) of every result under ``out``."""
    found = {}
    for f in out.glob("*/*/*/*/results.json"):
        r = json.loads(f.read_text())
        preds = {p.relative_to(f.parent).as_posix(): [json.loads(line) for line in p.read_text().splitlines()]
                 for p in sorted(f.parent.glob("trial*/*.predictions.jsonl"))}
        found[(r["model_name"], r["task_setting"])] = (r["results"], preds)
    return found


def test_prefetch_then_a_sweep_with_every_job_offline_equals_local_files(hub: dict, tmp_path: Path) -> None:
    home, work = tmp_path / "hf", tmp_path / "work"
    work.mkdir()
    cfg = ["--config-dir", str(conf(tmp_path, hub["models"]))]
    login = online(hub, home)
    models = ["model=hub_tiny,hub_h2"]

    dry = run_cli(["prefetch", "-m", *models, *SWEEP, "dry_run=true", *cfg], work, env=login)
    assert "would fetch" in dry.stdout and "Nothing fetched" in dry.stdout, dry.stdout
    assert f"model {TINY}@step1 -> " in dry.stdout and f"model {TINY}@step2 -> " in dry.stdout  # checkpoint sweep revisions
    assert "dataset Muennighoff/xwinograd@refs/convert/parquet test (en/test/*.parquet) -> " in dry.stdout, dry.stdout
    assert " kB)" in dry.stdout  # sizes as the hub reports them
    assert not (home / "hub" / f"models--{TINY.replace('/', '--')}" / "snapshots").exists()

    fetched = run_cli(["prefetch", "-m", *models, *SWEEP, *cfg], work, env=login)
    assert "0 failed" in fetched.stdout and "run with HuggingFace offline mode" in fetched.stdout, fetched.stdout
    wmt = home / "hub" / "datasets--wmt--wmt14" / "snapshots"
    files = sorted(p.relative_to(next(wmt.iterdir())).as_posix() for p in wmt.glob("*/**/*") if p.is_file())
    assert files == ["README.md", "fr-en/test-00000-of-00001.parquet", "fr-en/validation-00000-of-00001.parquet"]  # never train
    h2 = next((home / "hub" / f"models--{TINY_H2.replace('/', '--')}" / "snapshots").iterdir())
    assert not (h2 / "flax_model.msgpack").exists() and (h2 / "model.safetensors").is_file()

    again = run_cli(["prefetch", "-m", *models, *SWEEP, *cfg], work, env=login)
    assert "fetched (0 files" in again.stdout and "fetching" not in again.stdout, again.stdout

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: any request of a job fails at once
    compute_node = {**login, "HF_ENDPOINT": dead, "HF_HUB_ETAG_TIMEOUT": "1", "HF_HUB_DOWNLOAD_TIMEOUT": "1"}
    plan = run_cli(["-m", *models, *SWEEP, "dry_run=true", *cfg], work, env=compute_node)
    assert "not in the local cache" not in plan.stdout, plan.stdout
    run_cli(["-m", *models, *SWEEP, "output_dir=hub_results", *cfg], work, env=compute_node)
    configs = [c for c in (work / "hub_results").glob("*/*/*/*/config.yaml") if ".hydra_sweeps" not in c.parts]  # the results' own
    assert len(configs) == 9 and all("hf_offline: true" in c.read_text() for c in configs)

    local = {**compute_node, "FEWSHOT_HF_MIRROR": str(HUB)}  # the same data as JSONL files, the same weights as dirs
    run_cli(["-m", "model=local_step1,local_step2,local_h2", *SWEEP, "output_dir=local_results", *cfg], work, env=local)
    from_hub, from_files = results(work / "hub_results"), results(work / "local_results")
    names = {"hub_tiny__step1": "local_step1", "hub_tiny__step2": "local_step2", "hub_h2": "local_h2"}
    assert len(from_hub) == len(from_files) == 9
    for (model, task), (metrics, preds) in from_hub.items():
        assert (metrics, preds) == from_files[(names[model], task)], (model, task)
    weights = {json.loads(f.read_text())["weights"] for f in (work / "hub_results").glob("*/hub_tiny__step*/*/*/results.json")}
    assert len(weights) == 2 and all(w.startswith(f"hub:{TINY}@") and len(w.split("@")[1]) == 40 for w in weights)  # commits recorded


READ_SPLITS = """
import json, sys
from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.tasks.definitions import load_task_def
from fewshot_eval.evaluate.tasks.hub_data import HubSplit, hub_split, read_split
out = {}
for task, split, lang in json.loads(sys.argv[1]):
    out[task] = read_split(hub_split(load_task_def(task), split, lang))
try:
    read_split(HubSplit("Muennighoff/xwinograd", None, "en", "test", None))  # main: a loading script
except ConfigError as e:
    out["main"] = str(e)
print(json.dumps(out, default=str))
"""


def test_script_datasets_and_wmt_load_from_their_hub_layout(hub: dict, tmp_path: Path) -> None:
    """xwinograd, xstorycloze, exams (data only on refs/convert/parquet) and WMT (a split-restricted fetch), read by
    the jobs' code path from the server into an empty cache, equal the fixtures (the datasets' real schemas)."""
    import subprocess
    import sys

    cases = [("xwinograd", "test", "fr", "Muennighoff/xwinograd/fr/test"), ("xstorycloze", "eval", "es", "juletxara/xstory_cloze/es/eval"),
             ("exams", "train", "it", "mhardalov/exams/crosslingual_it/train"), ("wmt14_fr_en", "validation", None, "wmt/wmt14/fr-en/validation")]
    proc = subprocess.run([sys.executable, "-c", READ_SPLITS, json.dumps([c[:3] for c in cases])], capture_output=True, text=True,
                          env={**os.environ, **online(hub, tmp_path / "hf")}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.splitlines()[-1])
    for task, _, _, fixture in cases:
        expected = [json.loads(line) for line in (HUB / f"{fixture}.jsonl").read_text().splitlines() if line.strip()]
        assert got[task] == expected, task
    assert "holds a loading script (xwinograd.py), which datasets >= 4 does not run" in got["main"]
    assert "revision: refs/convert/parquet" in got["main"]


def test_a_missing_repo_is_one_clear_line(hub: dict, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    cfg = ["--config-dir", str(conf(tmp_path, hub["models"]))]
    proc = run_cli(["prefetch", "-m", "model=hub_missing,hub_h2", "task=copa", "nshot=0", *cfg], work, env=online(hub, tmp_path / "hf"), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors == [f"fewshot-eval: error: hub model fewshot-test/no-such-model: not found on {hub['url']} (or private/gated without "
                      "access). Check the id; for a private or gated repo log in (`hf auth login`) or export HF_TOKEN."], proc.stderr
    assert "1 failed" in proc.stdout and f"model {TINY_H2} -> " in proc.stdout  # the others are fetched all the same

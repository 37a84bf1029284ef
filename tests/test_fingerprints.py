"""A result is 'stale' when what produced it changed under it: task data (also per-language
files), a task definition, or the model's weights (a replaced checkpoint, a moved hub revision)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from cli_helpers import run_cli
from fewshot_eval.config import conf_dir
from fewshot_eval.plan.identity import weights_fingerprint


def statuses(out: str) -> list[str]:
    return [ln.split()[0] for ln in out.splitlines() if ln.split() and ln.split()[0] in ("run", "skip:", "stale")]


def test_editing_a_per_language_data_file_makes_results_stale(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "c"
    (conf / "task_def").mkdir(parents=True)
    (conf / "task").mkdir()
    src = conf_dir() / "task_def"
    shutil.copytree(src / "data" / "pawsx_demo", conf / "task_def" / "data" / "pawsx_mine")
    (conf / "task_def" / "pawsx_mine.yaml").write_text((src / "pawsx_demo.yaml").read_text().replace("data/pawsx_demo/", "data/pawsx_mine/"))
    (conf / "task" / "pawsx_mine.yaml").write_text("run_name: mine\ntasks: [pawsx_mine]\n")
    args = ["-m", "--config-dir", str(conf), "model=majority", "task=pawsx_mine", "nshot=0"]
    run_cli(args, workdir)
    assert statuses(run_cli(args + ["dry_run=true"], workdir).stdout) == ["skip:"]
    de = conf / "task_def" / "data" / "pawsx_mine" / "de" / "validation.jsonl"  # a {lang} path
    de.write_text(de.read_text().replace('"label": 1', '"label": 0', 1))
    out = run_cli(args + ["dry_run=true"], workdir).stdout
    assert statuses(out) == ["stale"], out


def test_replacing_a_checkpoint_at_the_same_path_makes_results_stale(workdir: Path, tmp_path: Path) -> None:
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_gpt2_path(), ckpt)
    args = ["-m", "model=tiny_gpt2", f"model.weights={ckpt}", "task=copa_demo", "nshot=0", "n_eval_samples=3"]
    run_cli(args, workdir)
    assert statuses(run_cli(args + ["dry_run=true"], workdir).stdout) == ["skip:"]
    weights = next(p for p in ckpt.iterdir() if p.suffix in (".safetensors", ".bin"))
    data = weights.read_bytes()
    time.sleep(0.01)
    weights.write_bytes(data)  # a new checkpoint written over the old one (same name)
    out = run_cli(args + ["dry_run=true"], workdir).stdout
    assert statuses(out) == ["stale"] and "weights changed" in out, out


def test_hub_weights_are_fingerprinted_by_their_resolved_revision(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "hub"
    ref = cache / "models--org--lm" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert weights_fingerprint("org/lm", None) is None  # unknown: never compared
    ref.write_text("a" * 40)
    first = weights_fingerprint("org/lm", None)
    ref.write_text("b" * 40)  # the branch moved to a new commit
    assert first == f"hub:org/lm@{'a' * 40}" and weights_fingerprint("org/lm", "main") != first
    assert weights_fingerprint("org/lm", "c" * 40) == f"hub:org/lm@{'c' * 40}"  # a pinned commit needs no cache
    assert os.environ["HF_HUB_CACHE"] == str(cache)


def test_a_planned_identity_digest_is_the_formula_s_for_every_nshot() -> None:
    """The planner serialises a setting's identity once and puts each nshot in (plan/identity.py
    IdentityTemplate): the digest must be the formula's byte for byte, or every result dir would move."""
    from fewshot_eval.plan.identity import IdentityTemplate, identity_digest, job_identity

    models = [{"predictor": "clm", "weights": "tiny-gpt2", "revision": None, "resources": {"gpus": 1}, "chat": {"system": "ö \"q\""}},
              {"predictor": "random", "weights": None, "revision": "main", "hf_overrides": {}}]
    params = [{"scoring": "sum", "seed": 3, "templates": ["a", "b"], "languages": None, "batch_size": 8, "demo_sampling": "per_example"},
              {"scoring": "mean", "seed": 0, "description": "tab\there", "max_new_tokens": 16, "until": ["\n"]}]
    catalogs = [None, {"lm_eval": "0.4.13", "tasks": {"lm_eval:copa": {"version": 1.0, "config": "abc"}}}]
    for model in models:
        for p in params:
            for catalog in catalogs:
                template = IdentityTemplate(model, ["copa_demo", "xnli_demo"], p, catalog)
                for n in (-1, 0, 1, 16, 10**6):
                    expected = job_identity(model, ["copa_demo", "xnli_demo"], p, n, catalog=catalog)
                    assert template.identity(n) == expected
                    assert template.digest(n) == identity_digest(expected)
    from fewshot_eval.plan.identity import TaskFingerprints

    fingerprints = TaskFingerprints(["copa_demo", "pawsx_demo"], [conf_dir()])
    general = TaskFingerprints(["copa_demo", "pawsx_demo"], [conf_dir()])
    general._tails = None  # the formula as written: json.dumps of the list, then sha256
    digest = IdentityTemplate(models[0], ["copa_demo", "pawsx_demo"], params[0]).digest(2)
    assert fingerprints(digest) == general(digest) and fingerprints(digest)[0].startswith("2:")

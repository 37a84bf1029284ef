"""Prefetch and offline jobs without a hub server: what a job reads from the hub, which jobs run offline, the
hub ids and revisions of the bundled suites, bad values. (Against a real hub server: tests/test_hub_server.py.)"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.api import plan
from fewshot_eval.evaluate.hub_cache import forced_offline, model_files, record_ref, storage_dir, weights_cached
from fewshot_eval.evaluate.tasks.definitions import load_task_def
from fewshot_eval.evaluate.tasks.hub_data import HubSplit, hub_split

HUB = Path(__file__).parent / "fixtures" / "hub"


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HuggingFace cache for this test (the hub cache path is read at import: patched too)."""
    import huggingface_hub.constants

    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    return home


def fake_model_snapshot(repo: str, revision: str, files: dict[str, str]) -> Path:
    commit = "ab" * 20
    snap = storage_dir(repo, "model") / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, text in files.items():
        (snap / name).write_text(text)
    record_ref(repo, "model", revision, commit)
    return snap


def test_forced_offline_sets_and_restores_the_variables_and_the_imported_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with forced_offline():
        assert os.environ["HF_HUB_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
        assert huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
    assert os.environ["HF_HUB_OFFLINE"] == "0" and "HF_DATASETS_OFFLINE" not in os.environ
    assert not huggingface_hub.constants.HF_HUB_OFFLINE and not datasets.config.HF_HUB_OFFLINE
    with forced_offline(False):
        assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_model_files_are_what_from_pretrained_reads() -> None:
    repo = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
            "special_tokens_map.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
            "model.safetensors.index.json", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "onnx/model.onnx",
            "original/consolidated.00.pth", "training_args.bin", "README.md", ".gitattributes"]
    assert model_files(repo) == ["config.json", "generation_config.json", "merges.txt", "model-00001-of-00002.safetensors",
                                 "model-00002-of-00002.safetensors", "model.safetensors.index.json", "special_tokens_map.json",
                                 "tokenizer.json", "tokenizer_config.json", "vocab.json"]
    assert "pytorch_model.bin" in model_files(["config.json", "pytorch_model.bin", "tf_model.h5"])  # no safetensors: the .bin


def test_weights_cached_needs_the_recorded_revision_and_every_shard(hf_home: Path) -> None:
    assert not weights_cached("org/lm", "step1")
    snap = fake_model_snapshot("org/lm", "step1", {"config.json": "{}", "model.safetensors.index.json":
                                                    '{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}',
                                                    "model-1.safetensors": "x"})
    assert not weights_cached("org/lm", "step1")  # a shard is missing
    (snap / "model-2.safetensors").write_text("x")
    assert weights_cached("org/lm", "step1") and not weights_cached("org/lm", "step2") and not weights_cached("org/lm", None)


def test_the_script_datasets_read_the_parquet_conversion() -> None:
    """xwinograd, xstorycloze, exams and crows_pairs: their main branch holds a loading script (datasets >= 4 refuses
    it); their splits are the <config>/<split>/*.parquet files of refs/convert/parquet."""
    assert hub_split(load_task_def("xwinograd"), "test", "fr") == HubSplit("Muennighoff/xwinograd", "refs/convert/parquet", None, "test", "fr/test/*.parquet")
    assert hub_split(load_task_def("xstorycloze"), "eval", "es").data_files == "es/eval/*.parquet"
    assert hub_split(load_task_def("exams"), "train", "bg").data_files == "crosslingual_bg/train/*.parquet"
    assert hub_split(load_task_def("crows_pairs"), "test", "french").data_files == "french/test/*.parquet"
    assert hub_split(load_task_def("wmt14_fr_en"), "test", None) == HubSplit("wmt/wmt14", None, "fr-en", "test", None)
    assert hub_split(load_task_def("copa_demo"), "train", None) is None  # local files


def test_a_bare_hub_id_is_refused_with_where_it_lives_now(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "task_def").mkdir(parents=True)
    (conf / "task").mkdir()
    text = (Path(__file__).parents[1] / "conf" / "task_def" / "copa.yaml").read_text().replace("path: aps/super_glue", "path: super_glue")
    (conf / "task_def" / "old_copa.yaml").write_text(text)
    (conf / "task" / "old_copa.yaml").write_text("run_name: old\ntasks: [old_copa]\n")
    _, [job] = plan(["model=random", "task=old_copa", "nshot=0"], config_dirs=[conf])
    assert job.status == "error"
    assert "'super_glue' is not a hub dataset id of the form <org>/<name> (the hub refuses bare ids). The hub serves it as aps/super_glue." in job.detail


def test_jobs_whose_inputs_are_all_local_or_cached_run_offline(tmp_path: Path, hf_home: Path) -> None:
    """hf_offline=true goes to every job that reads nothing it would have to download; a hub model not in the
    cache keeps the network (the job downloads it), and so does a setting with offline_when_cached: false."""
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "hub_lm.yaml").write_text("name: hub_lm\nweights: org/lm\nrevision: step1\n")
    (conf / "model" / "online_tiny.yaml").write_text("name: online_tiny\nweights: tiny-gpt2\noffline_when_cached: false\n")
    _, jobs = plan(["model=random,tiny_gpt2,hub_lm,online_tiny", "task=copa_demo", "nshot=0", f"output_dir={tmp_path / 'out'}"], config_dirs=[conf])
    offline = {j.unit.model_key: "hf_offline=true" in j.overrides for j in jobs}
    assert offline == {"random": True, "tiny_gpt2": True, "hub_lm": False, "online_tiny": False}
    fake_model_snapshot("org/lm", "step1", {"config.json": "{}", "model.safetensors": "x"})
    _, jobs = plan(["model=hub_lm", "task=copa_demo", "nshot=0", f"output_dir={tmp_path / 'out'}"], config_dirs=[conf])
    assert "hf_offline=true" in jobs[0].overrides and jobs[0].unit.weights == f"hub:org/lm@{'ab' * 20}"


def test_a_hub_dataset_not_in_the_cache_keeps_the_job_online_and_the_mirror_counts_as_local(tmp_path: Path, hf_home: Path,
                                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEWSHOT_HF_MIRROR", raising=False)
    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(v, "0")
    _, [job] = plan(["model=random", "task=copa", "nshot=0", f"output_dir={tmp_path / 'out'}"])
    assert job.status == "run" and "hf_offline=true" not in job.overrides
    monkeypatch.setenv("FEWSHOT_HF_MIRROR", str(HUB))
    _, [job] = plan(["model=random", "task=copa", "nshot=0", f"output_dir={tmp_path / 'out'}"])
    assert "hf_offline=true" in job.overrides


def test_prefetch_with_offline_mode_set_says_what_to_do(tmp_path: Path) -> None:
    proc = run_cli(["prefetch", "-m", "model=random", "task=copa", "nshot=0"], tmp_path, check=False,
                   env={"HF_HUB_OFFLINE": "1", "FEWSHOT_HF_MIRROR": "", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("fewshot-eval: error: prefetch downloads from the hub, but HF_HUB_OFFLINE=1 is set here. Run it where there "
                                   "is network with HF_HUB_OFFLINE=0 (jobs whose inputs are all cached run offline by themselves).")


def test_prefetch_of_a_sweep_that_reads_nothing_from_the_hub(tmp_path: Path) -> None:
    """Nothing to fetch: said so, offline too (no network needed to know it)."""
    proc = run_cli(["prefetch", "-m", "model=random,tiny_gpt2", "task=copa_demo,nli_demo", "nshot=0,2"], tmp_path)
    assert proc.stdout.strip() == "prefetch: the planned jobs read nothing from the hub (local files, built-in or cached models only)."


@pytest.mark.parametrize("arg", ["prefetch=maybe", "prefetch=1"])
def test_bad_prefetch_values_are_refused(tmp_path: Path, arg: str) -> None:
    proc = run_cli(["-m", "model=random", "task=copa_demo", "nshot=0", arg, "dry_run=true"], tmp_path, check=False)
    assert proc.returncode == 2
    assert re.search(r"error: prefetch must be true or false, got .*Pass prefetch=true or prefetch=false\.", proc.stderr), proc.stderr


def test_xcopa_translated_connectives_are_lm_evals() -> None:
    """The 'translated' template's connectives are lm-evaluation-harness's (lm_eval/tasks/xcopa/utils.py), so the
    numbers are comparable."""
    import importlib

    utils = importlib.import_module("lm_eval.tasks.xcopa.utils")
    td = load_task_def("xcopa")
    for lang in td.languages:
        theirs = getattr(utils, f"doc_to_text_{lang}").keywords["connector"]
        assert td.templates["translated"].vars[lang] == {"because": theirs["cause"], "so": theirs["effect"]}, lang

"""Every packaged experiment dry-runs and lists its jobs; how hub data and hub models plan offline."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest
import yaml

from cli_helpers import run_cli
from fewshot_eval.api import plan
from fewshot_eval.config import conf_dir
from fewshot_eval.evaluate.tasks.definitions import HFSource, load_task_def
from fewshot_eval.evaluate.tasks.task_data import HF_MIRROR_ENV

HUB = Path(__file__).parent / "fixtures" / "hub"
EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
SEED_EXPERIMENTS = ["few_shot_english", "rai_fairness_and_inclusion", "few_shot_multilingual", "baselines_random", "calibration",
                    "pawsx_default_vs_gt_calib", "translation", "ppl_explore"]


def full_mirror(root: Path) -> Path:
    """The fixtures, with every language of a multilingual task (copies of a fixture language): as if
    each hub dataset had been exported to JSONL."""
    shutil.copytree(HUB, root)
    for f in (conf_dir() / "task_def").glob("*.yaml"):
        td = load_task_def(f.stem)
        if not isinstance(td.source, HFSource) or not td.languages:
            continue
        base = root / td.source.path
        have = sorted(p.name for p in base.iterdir())
        for lang in td.languages:
            config = (td.source.name or "{lang}").replace("{lang}", lang)  # exams: crosslingual_<lang>
            if not (base / config).exists():
                shutil.copytree(base / have[0], base / config)
    return root


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Offline, empty HuggingFace caches, the lang16 example checkpoints present."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_home" / "datasets"))
    monkeypatch.delenv(HF_MIRROR_ENV, raising=False)
    monkeypatch.delenv("STORYCLOZE_DATA_DIR", raising=False)
    weights = tmp_path / "weights"
    for name in ("dense_lang16", "moe_128exp_lang16"):
        (weights / name).mkdir(parents=True)
        (weights / name / "config.json").write_text("{}")
        (weights / name / "model.safetensors").write_text("")  # planning looks for weight files, never loads them
    monkeypatch.setenv("FEWSHOT_WEIGHTS_DIR", str(weights))
    return tmp_path


def test_the_seed_experiments_exist_and_open_with_their_command() -> None:
    assert set(SEED_EXPERIMENTS) <= set(EXPERIMENTS)
    for name in EXPERIMENTS:
        lines = (conf_dir() / "experiment" / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
        info = yaml.safe_load("\n".join(lines))["experiment_info"]
        assert lines[0] == "# @package _global_" and lines[1] == f"# Run:  {info['command']}", name
        assert f"experiment={name}" in info["command"] and info["description"]


@pytest.mark.parametrize("name", SEED_EXPERIMENTS)
def test_every_experiment_dry_runs_and_lists_its_jobs(name: str, offline_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the hub data present locally (a mirror of the fixtures), every planned row runs: data,
    templates, calibration options and languages checked, hub models noted as not cached."""
    monkeypatch.setenv(HF_MIRROR_ENV, str(full_mirror(offline_env / "mirror")))
    _, jobs = plan([f"experiment={name}", f"output_dir={offline_env / 'out'}"])
    sweep = yaml.safe_load((conf_dir() / "experiment" / f"{name}.yaml").read_text())["hydra"]["sweeper"]["params"]
    models, tasks = sweep["model"].split(","), sweep["task"].split(",")
    assert {j.unit.model_key.split("__step")[0] for j in jobs} == set(models) and {j.unit.task_key for j in jobs} == set(tasks)
    # a vLLM setting (moe_128exp_lang16) plans an error row where vllm is not installed (CPU machines), and only then
    no_vllm = importlib.util.find_spec("vllm") is None
    vllm_rows = [j for j in jobs if j.unit.params["predictor"] == "vllm"]
    assert all((j.status == "error" and "pip install vllm" in j.detail) == no_vllm for j in vllm_rows), [j.detail for j in vllm_rows][:1]
    jobs = [j for j in jobs if j.unit.params["predictor"] != "vllm"]
    assert {j.status for j in jobs} <= {"run", "n/a"}, [(j.overrides, j.detail) for j in jobs if j.status not in ("run", "n/a")][:3]
    for j in jobs:
        hub = j.unit.params["predictor"] == "clm" and not str(j.unit.model["weights"]).startswith("/")
        if j.status == "run":
            assert ("hub model, not in the local cache -- the job downloads it (HF_HUB_OFFLINE=1 here" in j.detail) == hub, j.detail


def test_rai_and_multilingual_settings_are_the_seeds(offline_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HF_MIRROR_ENV, str(full_mirror(offline_env / "mirror")))
    _, jobs = plan(["experiment=rai_fairness_and_inclusion", f"output_dir={offline_env / 'out'}"])
    assert {(j.unit.params["scoring"], j.unit.nshot, tuple(j.unit.all_trials)) for j in jobs} == {("mean", 0, (0,))}
    _, jobs = plan(["experiment=few_shot_multilingual", f"output_dir={offline_env / 'out'}"])
    assert {j.unit.nshot for j in jobs} == {0, 1} and {len(j.unit.all_trials) for j in jobs if j.unit.nshot == 1} == {5}
    calib = {j.unit.task_key: j.unit.params["calibration_options"] for j in jobs if j.unit.params["calibrator"] == "average_option"}
    assert calib["pawsx_googletranslate_calib"] == {"pawsx": ["sentence1:: | sentence2::"]}
    assert {j.unit.params["train_languages"]["pawsx"] for j in jobs if j.unit.task_key.startswith("pawsx_from_")} == {
        "en", "de", "es", "fr", "ja", "ko", "zh"}
    planner, jobs = plan(["experiment=baselines_random", f"output_dir={offline_env / 'out'}"])
    assert planner.local_launcher and {j.unit.model_key for j in jobs} == {"random", "majority"}


def test_offline_without_the_data_every_row_says_what_is_missing(offline_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dry run of a hub-data experiment offline, the data neither cached nor mirrored: it plans (no crash)
    and each row is an error that names the dataset and what to do; nothing would launch."""
    _, jobs = plan(["experiment=few_shot_english", f"output_dir={offline_env / 'out'}"])
    assert jobs and {j.status for j in jobs} == {"error", "n/a"}
    assert {(j.unit.task_key, j.unit.nshot) for j in jobs if j.status == "n/a"} == {("blimp", 1), ("blimp", 32)}  # BLiMP is 0-shot
    copa = next(j for j in jobs if j.unit.task_key == "copa")
    assert copa.detail == (
        "task 'copa': hub dataset aps/super_glue (config copa) is not in the local cache and HF_DATASETS_OFFLINE=1: its job "
        "could not load it. Fetch it where there is network with `fewshot-eval prefetch -m <this sweep's overrides>`, point FEWSHOT_HF_MIRROR "
        "at JSONL copies, or unset HF_DATASETS_OFFLINE.")
    cached = offline_env / "hf_home" / "datasets" / "aps___super_glue"  # datasets' cache of it: planned to run
    cached.mkdir(parents=True)
    _, jobs = plan(["model=gpt2", "task=copa", f"output_dir={offline_env / 'out'}"])
    assert [j.status for j in jobs] == ["run"]
    # a manual download that is not there
    _, jobs = plan(["model=random", "task=storycloze", f"output_dir={offline_env / 'out'}"])
    assert jobs[0].status == "error" and "'${STORYCLOZE_DATA_DIR}/cloze_test_" in jobs[0].detail and "is not set" in jobs[0].detail
    assert "manual download" in jobs[0].detail
    monkeypatch.setenv("STORYCLOZE_DATA_DIR", str(Path(__file__).parent / "fixtures" / "storycloze"))  # downloaded: read at planning
    _, jobs = plan(["model=random", "task=storycloze", f"output_dir={offline_env / 'out'}"])
    assert jobs[0].status == "run"


def test_cli_dry_run_of_an_experiment_prints_its_jobs(offline_env: Path, workdir: Path) -> None:
    env = {HF_MIRROR_ENV: str(full_mirror(offline_env / "mirror"))}
    out = run_cli(["-m", "experiment=rai_fairness_and_inclusion", "dry_run=true"], workdir, env=env).stdout
    assert "Dry run: 16 jobs planned" in out and "rai/gpt2_xl/stereoset/0shot." in out and "16 run" in out


@pytest.mark.slow
def test_baselines_random_runs_on_the_fixtures(offline_env: Path, workdir: Path) -> None:
    env = {HF_MIRROR_ENV: str(full_mirror(offline_env / "mirror"))}
    out = run_cli(["-m", "experiment=baselines_random", "task=copa,xnli", "languages={xnli:[en,de]}"], workdir, env=env).stdout
    assert "ran 4, skipped 0, failed 0" in out
    results = sorted((workdir / "results" / "baselines_random").rglob("results.json"))
    assert len(results) == 4


def test_list_shows_every_section_with_descriptions(workdir: Path) -> None:
    out = run_cli(["list"], workdir).stdout
    sections = [line for line in out.splitlines() if line.startswith("== ")]
    assert [s.split(" (")[0] for s in sections] == ["== Model settings", "== Model groups", "== Task settings", "== Task groups",
                                                     "== Task definitions", "== Experiments", "== Site profiles"]
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith((" ", "=="))}
    assert "EleutherAI/pythia-160m" in lines["pythia_160m"] and "[checkpoint sweep: 8 revisions" in lines["pythia_160m_steps"]
    assert "model=gpt2,gpt2_medium,gpt2_large,gpt2_xl" in out  # a group and what it expands to
    assert re.search(r"task=glob\(\*\) = [^\n]*\bboolq,boolq_calib,cb,", out)  # glob(*) spelled out
    assert "CrowS-Pairs stereotype preference" in lines["crows_pairs"]
    assert "[clusters: example-cluster] an example cluster" in lines["example"] and "no site profile" in lines["none"]
    assert "$ fewshot-eval -m experiment=few_shot_multilingual hydra/launcher=submitit_slurm" in out
    one = run_cli(["list", "task-defs"], workdir).stdout
    assert not one.startswith("==") and "xnli " in one


def test_ppl_explore_and_translation_are_the_seeds(offline_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ppl_explore: mean scoring (BLiMP keeps sum: its pairs compare whole-sentence log-probs), 0-shot, 5 trials,
    one setting per Pythia checkpoint; translation: the seed's six WMT directions as generation jobs."""
    monkeypatch.setenv(HF_MIRROR_ENV, str(full_mirror(offline_env / "mirror")))
    _, jobs = plan(["experiment=ppl_explore", f"output_dir={offline_env / 'out'}"])
    assert {j.unit.nshot for j in jobs} == {0} and {j.status for j in jobs} == {"run"}
    assert {j.unit.task_key: j.unit.params["scoring"] for j in jobs}["blimp_fields"] == "sum"
    assert {j.unit.params["scoring"] for j in jobs if j.unit.task_key != "blimp_fields"} == {"mean"}
    assert len({j.unit.model_key for j in jobs if j.unit.model_key.startswith("pythia_160m_steps__step")}) == 8
    extra = {j.unit.task_key: (j.unit.params["extra_metrics"] or {}) for j in jobs}["copa"]  # gold-answer perplexity beside accuracy
    assert extra["copa"] == ["gold_perplexity"] and {"cb", "piqa", "multirc"} <= set(extra)
    _, jobs = plan(["experiment=translation", "model=xglm_564m", f"output_dir={offline_env / 'out'}"])
    assert sorted(j.unit.task_key for j in jobs if j.unit.nshot == 0) == sorted(
        ["wmt14fren", "wmt14enfr", "wmt16deen", "wmt16ende", "wmt16roen", "wmt16enro"])

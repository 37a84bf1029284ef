"""Checkpoint sweeps: one model setting with ``checkpoints:`` is evaluated at every checkpoint of a
training run, each as its own setting ``<key>__step<N>``; checkpoints saved later run on the next sweep."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.api import plan
from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path


def save_checkpoint(run: Path, step: int) -> Path:
    """A HuggingFace checkpoint dir as a trainer writes it (the tiny model, saved with save_pretrained)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tiny_gpt2_path()
    model = AutoModelForCausalLM.from_pretrained(src)
    with __import__("torch").no_grad():  # each step its own weights, so the numbers differ between checkpoints
        for p in model.parameters():
            p.add_(0.01 * step / 100)
    dest = run / f"checkpoint-{step}"
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(src).save_pretrained(dest)
    return dest


def run_conf(tmp_path: Path, run: Path, extra: str = "") -> Path:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True, exist_ok=True)
    (conf / "model" / "myrun.yaml").write_text(
        f"name: myrun\npredictor: clm\ncheckpoints: {{dir: {run}, pattern: 'checkpoint-*'}}\n"
        f"eval: {{device: cpu, batch_size: 4}}\n{extra}"
    )
    return conf


def steps(jobs) -> dict[str, str]:  # noqa: ANN001
    return {j.unit.model_key: j.status for j in jobs}


def test_a_run_dir_expands_to_one_setting_per_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for step in (100, 20, 300):
        save_checkpoint(run, step)
    (run / "checkpoint-400").mkdir()  # being written: no config.json yet, not a checkpoint
    (run / "runs").mkdir()  # other dirs of the run do not match the pattern
    conf = run_conf(tmp_path, run)
    _, jobs = plan(["model=myrun", "task=copa_demo", "nshot=0,2", f"output_dir={tmp_path / 'out'}"], config_dirs=[conf])
    assert [j.unit.model_key for j in jobs] == ["myrun__step20", "myrun__step100", "myrun__step300"] * 2  # per nshot, by step
    assert {j.unit.model["weights"] for j in jobs} == {str(run / f"checkpoint-{s}") for s in (20, 100, 300)}
    assert {j.unit.model["name"] for j in jobs} == {"myrun__step20", "myrun__step100", "myrun__step300"}
    assert len({j.unit.result_dir for j in jobs}) == 6 and all(j.status == "run" for j in jobs)
    steps = [next(o for o in j.overrides if o.startswith("checkpoint=")).split("=")[1] for j in jobs]
    assert all(f"/myrun__step{n}/" in str(j.unit.result_dir) for n, j in zip(steps, jobs))
    # picking steps by hand; a step that does not exist lists the ones that do
    _, jobs = plan(["model=myrun", "task=copa_demo", "checkpoint=100", f"output_dir={tmp_path / 'out'}"], config_dirs=[conf])
    assert [j.unit.model_key for j in jobs] == ["myrun__step100"]
    with pytest.raises(ConfigError, match=r"checkpoint=7: model 'myrun' has no checkpoint with that step. Steps: 20, 100, 300"):
        plan(["model=myrun", "task=copa_demo", "checkpoint=7", f"output_dir={tmp_path / 'out'}"], config_dirs=[conf])
    # models without checkpoints in the same sweep ignore checkpoint=
    _, jobs = plan(["model=myrun,random", "task=copa_demo", "checkpoint=20", f"output_dir={tmp_path / 'out'}"], config_dirs=[conf])
    assert [j.unit.model_key for j in jobs] == ["myrun__step20", "random"]


def test_hub_revisions_expand_to_one_setting_per_revision(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "py.yaml").write_text("name: py\nweights: EleutherAI/pythia-70m\ncheckpoints: {revisions: [step1000, step143000]}\n")
    _, jobs = plan(["model=py", "task=copa_demo", f"output_dir={tmp_path}"], config_dirs=[conf])
    assert [(j.unit.model_key, j.unit.model["revision"], j.unit.identity["model"]["revision"]) for j in jobs] == [
        ("py__step1000", "step1000", "step1000"), ("py__step143000", "step143000", "step143000")]
    assert jobs[0].unit.id_digest != jobs[1].unit.id_digest


def test_bad_checkpoint_settings_are_one_line_errors(tmp_path: Path) -> None:
    conf = run_conf(tmp_path, tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"model 'myrun' key 'checkpoints': checkpoint dir .*missing does not exist"):
        plan(["model=myrun", "task=copa_demo", f"output_dir={tmp_path}"], config_dirs=[conf])
    (tmp_path / "empty").mkdir()
    conf = run_conf(tmp_path, tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"model 'myrun': no checkpoints found"):
        plan(["model=myrun", "task=copa_demo", f"output_dir={tmp_path}"], config_dirs=[conf])
    (conf / "model" / "both.yaml").write_text("name: both\nweights: gpt2\ncheckpoints: {dir: /x, revisions: [a1]}\n")
    with pytest.raises(ConfigError, match=r"model/both.yaml: 'checkpoints' needs exactly one of 'dir'"):
        plan(["model=both", "task=copa_demo", f"output_dir={tmp_path}"], config_dirs=[conf])
    (conf / "model" / "base.yaml").write_text("name: base\npredictor: random\ncheckpoints: {revisions: [step1]}\nweights: gpt2\n")
    with pytest.raises(ConfigError, match=r"model 'base' key 'checkpoints': checkpoints need a predictor that loads HuggingFace "
                                          r"weights \(clm, vllm\), got predictor 'random'"):
        plan(["model=base", "task=copa_demo", f"output_dir={tmp_path}"], config_dirs=[conf])


@pytest.mark.slow
def test_a_sweep_runs_every_checkpoint_and_later_only_the_new_one(tmp_path: Path, workdir: Path) -> None:
    run = tmp_path / "run"
    for step in (100, 200, 300):
        save_checkpoint(run, step)
    conf = run_conf(tmp_path, run)
    sweep = ["-m", "--config-dir", str(conf), "model=myrun", "task=copa_demo", "nshot=1", "num_trials=1", "n_eval_samples=4"]
    out = run_cli(sweep, workdir).stdout
    assert "ran 3, skipped 0, failed 0" in out
    found = sorted(p.relative_to(workdir / "results").parts[1] for p in (workdir / "results").rglob("results.json"))
    assert found == ["myrun__step100", "myrun__step200", "myrun__step300"]
    recorded = {json.loads(p.read_text())["model_name"] for p in (workdir / "results").rglob("results.json")}
    assert recorded == set(found)

    save_checkpoint(run, 400)  # the training run goes on
    _, jobs = plan(["model=myrun", "task=copa_demo", "nshot=1", "num_trials=1", "n_eval_samples=4", f"output_dir={workdir / 'results'}"],
                   config_dirs=[conf])
    assert steps(jobs) == {"myrun__step100": "skip: complete", "myrun__step200": "skip: complete",
                           "myrun__step300": "skip: complete", "myrun__step400": "run"}
    out = run_cli(sweep, workdir).stdout
    assert "ran 1, skipped 3, failed 0" in out or ("ran 1" in out and "3 skip: complete" in out)
    launched = [json.loads(line)["model"] for line in (workdir / "results" / "scheduled_jobs.jsonl").read_text().splitlines()]
    assert launched[3:] == ["myrun__step400"]
    shutil.rmtree(run / "checkpoint-200")  # a deleted checkpoint is simply no longer swept
    _, jobs = plan(["model=myrun", "task=copa_demo", "nshot=1", "num_trials=1", "n_eval_samples=4", f"output_dir={workdir / 'results'}"],
                   config_dirs=[conf])
    assert sorted(steps(jobs)) == ["myrun__step100", "myrun__step300", "myrun__step400"]

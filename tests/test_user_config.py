"""The user's config dirs (--config-dir): searched before the packaged configs, listed with their
source; user mistakes in configs and overrides are one-line errors (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.api import plan
from fewshot_eval.config import ConfigError, conf_dir


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("fewshot-eval: error: "), err
    return err[len("fewshot-eval: error: "):]


@pytest.fixture
def shadowing(user_conf: Path) -> Path:
    """user_conf plus a tiny_gpt2 setting of the user's own: a random baseline under the packaged name."""
    (user_conf / "model" / "tiny_gpt2.yaml").write_text("# my tiny_gpt2\nname: tiny_gpt2\npredictor: random\n")
    return user_conf


# ---- the user's file wins ----------------------------------------------------------------
def test_user_setting_shadows_the_packaged_one(tmp_path: Path, shadowing: Path) -> None:
    _, [job] = plan(["model=tiny_gpt2", "task=copa_demo", f"output_dir={tmp_path}"], config_dirs=[shadowing])
    assert job.unit.model["predictor"] == "random" and job.unit.model["weights"] is None
    _, [job] = plan(["model=tiny_gpt2", "task=copa_demo", f"output_dir={tmp_path}"])
    assert job.unit.model["predictor"] == "clm"  # without the dir: the packaged one


def test_first_config_dir_given_wins(tmp_path: Path, shadowing: Path) -> None:
    other = tmp_path / "other"
    (other / "model").mkdir(parents=True)
    (other / "model" / "tiny_gpt2.yaml").write_text("name: tiny_gpt2\npredictor: majority\n")
    _, [job] = plan(["model=tiny_gpt2", f"output_dir={tmp_path}"], config_dirs=[other, shadowing])
    assert job.unit.model["predictor"] == "majority"
    _, [job] = plan(["model=tiny_gpt2", f"output_dir={tmp_path}"], config_dirs=[shadowing, other])
    assert job.unit.model["predictor"] == "random"


def test_user_task_definition_shadows_the_packaged_one(tmp_path: Path, user_conf: Path) -> None:
    """task_def/<name>.yaml is looked up in the same order: the user's copy has a template 'mine'."""
    packaged = conf_dir() / "task_def" / "copa_demo.yaml"
    text = packaged.read_text().replace("data/copa_demo/", f"{packaged.parent}/data/copa_demo/")
    text = text.replace("templates:\n", "templates:\n  mine:\n    prompt: \"{{ premise }} {{ candidate }}\"\n"
                                        "    candidates: {0: \"{{ choice1 }}\", 1: \"{{ choice2 }}\"}\n", 1)
    (user_conf / "task_def").mkdir()
    (user_conf / "task_def" / "copa_demo.yaml").write_text(text)
    args = ["model=random", "task=copa_demo", "templates={copa_demo: mine}", f"output_dir={tmp_path}"]
    _, [job] = plan(args, config_dirs=[user_conf])
    assert job.unit.params["templates"] == {"copa_demo": "mine"} and job.status == "run", job.detail
    _, [job] = plan(args)
    assert job.status == "error" and "unknown template 'mine'" in job.detail


def test_cli_config_dir_wins_in_composition_and_in_job_processes(workdir: Path, shadowing: Path) -> None:
    out = run_cli(["--cfg", "job", "--config-dir", str(shadowing), "model=tiny_gpt2"], workdir).stdout
    assert "predictor: random" in out and "weights: tiny-gpt2" not in out
    # local_parallel starts one process per job: they search the user's dir first too
    (shadowing / "model" / "random.yaml").write_text("name: random\npredictor: majority\n")
    run_cli(["-m", f"--config-dir={shadowing}", "model=random", "task=copa_demo", "n_eval_samples=4",
             "hydra/launcher=local_parallel", "output_dir=out"], workdir)
    [identity] = (workdir / "out").rglob("identity.json")
    assert '"majority"' in identity.read_text() and "random" in str(identity)


def test_missing_config_dir_is_a_one_line_error(tmp_path: Path, workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"config dir '.*/nope' \(--config-dir .*nope\) not found"):
        plan(["model=random"], config_dirs=[tmp_path / "nope"])
    msg = one_line_error(run_cli(["-m", "-cd", "nope", "model=random", "dry_run=true"], workdir, check=False))
    assert f"config dir '{workdir / 'nope'}'" in msg
    msg = one_line_error(run_cli(["list", "models", "--config-dir", "nope"], workdir, check=False))
    assert "not found" in msg


# ---- fewshot-eval list: where each option comes from ---------------------------------------
def test_list_shows_the_source_and_what_shadows_a_packaged_file(workdir: Path, shadowing: Path) -> None:
    lines = {line.split()[0]: line for line in run_cli(["list", "models", "--config-dir", str(shadowing)], workdir).stdout.splitlines()}
    assert f"{shadowing} (shadows packaged)" in lines["tiny_gpt2"] and "my tiny_gpt2" in lines["tiny_gpt2"]
    assert str(shadowing) in lines["my_random"] and "shadows" not in lines["my_random"]
    assert lines["random"].split()[1] == "packaged"
    groups = run_cli(["list", "model-groups", "--config-dir", str(shadowing)], workdir).stdout
    assert any(line.startswith("mine ") and str(shadowing) in line and "model=my_random,majority" in line for line in groups.splitlines())
    assert "source: packaged" in run_cli(["list", "experiments"], workdir).stdout
    defs = run_cli(["list", "task-defs"], workdir).stdout
    assert any(line.split()[:2] == ["copa_demo", "packaged"] for line in defs.splitlines())


def test_list_into_a_closed_pipe_ends_quietly(workdir: Path) -> None:
    """`fewshot-eval list | head -1`: the reader is gone before anything is written."""
    proc = subprocess.Popen([sys.executable, "-m", "fewshot_eval", "list", "models"], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0 and err == ""


# ---- user mistakes: one line, exit 2 --------------------------------------------------------
def test_malformed_yaml_names_file_and_line(workdir: Path, user_conf: Path) -> None:
    bad = user_conf / "model" / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    for args in (["-m", "model=bad", "dry_run=true"], ["-m", "model=random,bad", "dry_run=true"], ["model=bad", "dry_run=true"]):
        msg = one_line_error(run_cli(["--config-dir", str(user_conf), *args], workdir, check=False))
        assert msg.startswith(f"{bad}:1: invalid YAML: "), msg


def test_names_with_spaces_or_non_ascii_say_how_to_quote(workdir: Path, user_conf: Path) -> None:
    msg = one_line_error(run_cli(["-m", "model=my model", "task=copa_demo", "dry_run=true"], workdir, check=False))
    assert "Unknown model 'my model'. Available: " in msg and "'model=\"my model\"'" in msg
    msg = one_line_error(run_cli(["-m", "model=modèle", "task=copa_demo", "dry_run=true"], workdir, check=False))
    assert "'model=\"modèle\"'" in msg
    # ... and that advice works
    (user_conf / "model" / "modèle.yaml").write_text("name: modèle\npredictor: random\n")
    out = run_cli(["-m", "--config-dir", str(user_conf), 'model="modèle"', "task=copa_demo", "dry_run=true"], workdir).stdout
    assert "modèle/copa_demo/0shot." in out


def test_empty_model_list_is_a_one_line_error(workdir: Path) -> None:
    for args in (["-m", "model=[]", "dry_run=true"], ["model=[]"]):
        msg = one_line_error(run_cli(args, workdir, check=False))
        assert "pick at least one" in msg and "tiny_gpt2" in msg


def test_unknown_preset_in_a_union_is_one_line(workdir: Path) -> None:
    msg = one_line_error(run_cli(["-m", "models=demo,nope", "dry_run=true"], workdir, check=False))
    assert "unknown models preset 'nope'. Available: all, baselines, bloom, demo" in msg
    out = run_cli(["-m", "models=demo,baselines", "task=copa_demo", "dry_run=true"], workdir).stdout
    assert [line.split()[1] for line in out.splitlines() if line.startswith("run ")] == ["random", "majority", "tiny_gpt2"]

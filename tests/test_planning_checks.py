"""What would make a job die at its start is caught at planning: the dry run marks the row
``error: <reason>``, prints the reason, exits non-zero and launches nothing; a real sweep refuses too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.config import conf_dir


def own_copa(conf: Path, edit_data=None, edit_yaml=None) -> None:
    """A user task 'copa_mine' (a copy of copa_demo with its own data) and its task setting."""
    src = conf_dir() / "task_def"
    (conf / "task_def" / "data").mkdir(parents=True, exist_ok=True)
    (conf / "task").mkdir(exist_ok=True)
    shutil.copytree(src / "data" / "copa_demo", conf / "task_def" / "data" / "copa_mine")
    text = (src / "copa_demo.yaml").read_text().replace("data/copa_demo/", "data/copa_mine/")
    (conf / "task_def" / "copa_mine.yaml").write_text(edit_yaml(text) if edit_yaml else text)
    if edit_data:
        edit_data(conf / "task_def" / "data" / "copa_mine")
    (conf / "task" / "copa_mine.yaml").write_text("run_name: mine\ntasks: [copa_mine]\n")


def replace_line(path: Path, n: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[n - 1] = text
    path.write_text("\n".join(lines) + "\n")


def assert_caught(workdir: Path, args: list[str], *fragments: str) -> None:
    """Dry run and real sweep: exit 2, an 'error' row, the reason on stderr, nothing launched."""
    dry = run_cli(["-m", *args, "dry_run=true"], workdir, check=False)
    assert dry.returncode == 2, dry.stdout + dry.stderr
    rows = [ln for ln in dry.stdout.splitlines() if ln.startswith("error ")]
    assert rows, dry.stdout
    for f in fragments:
        assert f in dry.stderr, (f, dry.stderr)
    assert "Traceback" not in dry.stderr
    real = run_cli(["-m", *args], workdir, check=False)
    assert real.returncode == 2 and "Nothing launched" in real.stderr, real.stdout + real.stderr
    assert not list((workdir / "results").rglob("trial0")), "a job was launched"
    assert not (workdir / "results" / "scheduled_jobs.jsonl").exists()


def test_missing_data_file(workdir: Path, tmp_path: Path) -> None:
    own_copa(tmp_path / "c", edit_data=lambda d: (d / "train.jsonl").unlink())
    assert_caught(workdir, ["--config-dir", str(tmp_path / "c"), "model=random", "task=copa_mine", "nshot=2"],
                  "train.jsonl does not exist")


def test_data_that_does_not_parse_names_file_and_line(workdir: Path, tmp_path: Path) -> None:
    own_copa(tmp_path / "c", edit_data=lambda d: replace_line(d / "validation.jsonl", 7, '{"premise": "cut off'))
    assert_caught(workdir, ["--config-dir", str(tmp_path / "c"), "model=random", "task=copa_mine", "nshot=0"],
                  "copa_mine/validation.jsonl:7: not valid JSON")


def test_gold_label_outside_the_label_set(workdir: Path, tmp_path: Path) -> None:
    bad = '{"premise": "A.", "choice1": "B.", "choice2": "C.", "question": "cause", "label": 2, "idx": 99}'
    own_copa(tmp_path / "c", edit_data=lambda d: replace_line(d / "train.jsonl", 5, bad))
    assert_caught(workdir, ["--config-dir", str(tmp_path / "c"), "model=random", "task=copa_mine", "nshot=2"],
                  "copa_mine/train.jsonl:5:", "gold label '2', not one of ['0', '1']")


def test_template_field_missing_in_the_data(workdir: Path, tmp_path: Path) -> None:
    own_copa(tmp_path / "c", edit_yaml=lambda t: t.replace("{{ premise[:-1] }}", "{{ premis[:-1] }}"))
    assert_caught(workdir, ["--config-dir", str(tmp_path / "c"), "model=random", "task=copa_mine", "nshot=0"],
                  "template 'default': field 'premis' is not in the data")


def test_missing_local_weights_names_the_key_and_the_variable(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "c"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "mine.yaml").write_text("name: mine\npredictor: clm\nweights: ${oc.env:FEWSHOT_WEIGHTS_DIR,/checkpoints}/mine\n")
    assert_caught(workdir, ["--config-dir", str(conf), "model=mine", "task=copa_demo", "nshot=0"],
                  "weights /checkpoints/mine does not exist", "'weights'", "FEWSHOT_WEIGHTS_DIR")
    # the packaged example settings point at $FEWSHOT_WEIGHTS_DIR too: caught without a GPU or a job
    assert_caught(workdir, ["model=dense_lang16", "task=copa_demo", "nshot=0"], "dense_lang16 does not exist", "FEWSHOT_WEIGHTS_DIR")


@pytest.mark.parametrize("override, fragment", [
    ("device=gpu", "device: unknown device 'gpu'. Valid: auto, cpu, cuda, cuda:<index>"),
])
def test_dtype_and_device_values(workdir: Path, override: str, fragment: str) -> None:
    """(dtype=fp16, outside the schema's enum, refuses the whole plan: tests/test_rejected_input.py)"""
    assert_caught(workdir, ["model=tiny_gpt2", "task=copa_demo", "nshot=0", override], fragment)


def test_balanced_must_divide_nshot(workdir: Path) -> None:
    assert_caught(workdir, ["model=random", "task=copa_demo", "nshot=3", "balanced=true"],
                  "nshot=3 is not divisible by its 2 classes")


def test_only_the_bad_rows_are_errors(workdir: Path) -> None:
    """nshot=2 is fine and nshot=3 is not: the plan shows both, and still nothing is launched."""
    dry = run_cli(["-m", "model=random", "task=copa_demo", "nshot=2,3", "balanced=true", "dry_run=true"], workdir, check=False)
    assert dry.returncode == 2
    statuses = sorted(ln.split()[0] for ln in dry.stdout.splitlines() if ln.split() and ln.split()[0] in ("run", "error"))
    assert statuses == ["error", "run"]


def test_nshot_above_the_demonstration_pool_is_one_result(workdir: Path) -> None:
    """copa_demo has 42 train rows: nshot=42, 50 and 1000000 give the same demonstrations, so one result dir."""
    out = run_cli(["-m", "model=random", "task=copa_demo", "nshot=42,50,1000000", "num_trials=1", "dry_run=true"], workdir).stdout
    rows = [ln for ln in out.splitlines() if ln.startswith("run ")]
    assert len(rows) == 1 and "42shot." in rows[0], out
    run_cli(["-m", "model=random", "task=copa_demo", "nshot=1000000", "num_trials=1"], workdir)
    assert [p.parent.name.split(".")[0] for p in (workdir / "results").rglob("results.json")] == ["42shot"]
    again = run_cli(["-m", "model=random", "task=copa_demo", "nshot=42", "num_trials=1"], workdir).stdout
    assert "1 skip: complete" in again


def test_hf_overrides_key_not_in_the_model_config(workdir: Path) -> None:
    """A key transformers would pass on to the model's constructor (dying at load) is caught at planning."""
    assert_caught(workdir, ["model=tiny_gpt2", "task=copa_demo", "nshot=0", "+model.hf_overrides.activation=gelu"],
                  "hf_overrides key 'activation' is not a field of its GPT2Config", "activation_function")


def test_a_model_without_weights(workdir: Path) -> None:
    """The one check of 'weights' (HFPredictor.check_settings): at planning, on the job's row."""
    assert_caught(workdir, ["model=tiny_gpt2", "task=copa_demo", "nshot=0", "model.weights=null"],
                  "model 'tiny_gpt2': predictor 'clm' needs 'weights' (a local dir, a hub id, or 'tiny-gpt2').")


def test_hf_overrides_on_a_baseline(workdir: Path) -> None:
    assert_caught(workdir, ["model=random", "task=copa_demo", "nshot=0", "+model.hf_overrides.n_layer=1"],
                  "hf_overrides applies to predictors clm and vllm", "not 'random'")


@pytest.mark.parametrize("field, value, fragment", [
    ("timeout_s", "0", "server.timeout_s must be a number > 0 (seconds per request), got 0"),
    ("max_retries", "-1", "server.max_retries must be a number >= 0, got -1"),
])
def test_served_model_limits(workdir: Path, tmp_path: Path, field: str, value: str, fragment: str) -> None:
    conf = tmp_path / "c"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "served.yaml").write_text(
        f"name: served\npredictor: openai_completions\nweights: tiny-gpt2\nserver: {{base_url: http://127.0.0.1:9/v1, {field}: {value}}}\n")
    assert_caught(workdir, ["--config-dir", str(conf), "model=served", "task=copa_demo", "nshot=0"], fragment)

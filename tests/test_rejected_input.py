"""User mistakes are rejected at planning -- one line, exit status 2, no traceback, nothing launched --
instead of being silently accepted (issue 8)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.api import plan
from fewshot_eval.config import ConfigError, conf_dir
from fewshot_eval.plan.checks import check_result_layout, check_same_result, check_slurm_client
from fewshot_eval.settings import check_setting_name

BASE = ["-m", "model=random", "task=copa_demo"]
DRY = BASE + ["dry_run=true"]


def rejected(proc: subprocess.CompletedProcess, workdir: Path, *fragments: str) -> str:
    """Exit 2, exactly one 'fewshot-eval: error:' line containing ``fragments``, no traceback, nothing launched."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out and "HYDRA_FULL_ERROR" not in out, out[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fewshot-eval: error:")]
    assert len(errors) == 1, proc.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    assert not list(workdir.rglob("scheduled_jobs.jsonl")) and not list(workdir.rglob("results.json")), "nothing may launch"
    assert not (workdir / "results").exists(), "planning fails before the output dir is touched"
    return errors[0]


# ---- 1. unknown top-level keys ----------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        BASE + ["+nshots=2"],  # not a dry run: still nothing launches
        DRY + ["+nshots=0,2"],  # a swept unknown key
        DRY + ["nshots=0,2"],  # without '+' (Hydra's own hint would suggest adding one)
    ],
)
def test_unknown_top_level_key_is_rejected_with_a_suggestion(workdir: Path, args: list[str]) -> None:
    line = rejected(run_cli(args, workdir, check=False), workdir, "unknown key 'nshots'", "did you mean 'nshot'?", "Valid top-level keys: output_dir, nshot,")
    assert "nshots=" in line  # names the override


def test_unknown_key_in_an_experiment_names_the_file(workdir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "bad.yaml").write_text("# @package _global_\nnum_trails: 5\nhydra:\n  sweeper:\n    params:\n      model: random\n")
    (conf / "experiment" / "bad_sweep.yaml").write_text("# @package _global_\nhydra:\n  sweeper:\n    params:\n      model: random\n      seeds: 0,1\n")
    proc = run_cli(["-m", f"--config-dir={conf}", "experiment=bad", "dry_run=true"], workdir, check=False)
    rejected(proc, workdir, "experiment/bad.yaml: unknown key 'num_trails'", "did you mean 'num_trials'?")
    proc = run_cli(["-m", f"--config-dir={conf}", "experiment=bad_sweep", "dry_run=true"], workdir, check=False)
    rejected(proc, workdir, "experiment=bad_sweep (hydra.sweeper.params): unknown key 'seeds'", "did you mean 'seed'?")


def test_unknown_key_in_a_single_run_is_an_error_too(workdir: Path) -> None:
    proc = run_cli(["model=random", "task=copa_demo", "+nshots=2"], workdir, check=False)
    assert proc.returncode != 0 and "unknown key 'nshots' (did you mean 'nshot'?)" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(workdir.rglob("results.json"))


# ---- 2. the battery: every mistyped or contradictory value of issue 21 (one table) -----------------------
# Each case: (id, how it runs, arguments, expected exit, words of the one line). How it runs:
#   "plan": in-process through fewshot_eval.api.plan (the sweep's planner), BASE first, the battery's config dir
#           given: exit 2 = a ConfigError whose one-line message (as the app prints it) has the words, or error
#           rows (the sweep refuses to launch them with exit 2); exit 0 = planned, the words in one warning.
#   "cli":  a subprocess `fewshot-eval -m model=random task=copa_demo dry_run=true ARGS` (exit status, one line,
#           no traceback, nothing written), for the end-to-end path; "cmd": `fewshot-eval ARGS` (report/recalc).
#   "user": as "cli" but run by a second Unix user (file permissions; root reads everything).
#   "main": a SLURM sweep planned where there is no GPU still plans GPU jobs (the opposite of the local case).
BAD = "should have been refused"
CASES: list[tuple[str, str, list[str], int, list[str]]] = [
    # booleans only booleans
    ("dry_run=tru", "cli", ["dry_run=tru"], 2, ["dry_run must be true or false, got 'tru'", "Pass dry_run=true or dry_run=false"]),
    ("dry_run=flase", "plan", ["dry_run=flase"], 2, ["dry_run must be true or false, got 'flase'"]),
    ("split_trials=maybe", "plan", ["split_trials=maybe"], 2, ["split_trials must be true or false, got 'maybe'"]),
    ("override_completed=2", "plan", ["override_completed=2"], 2, ["override_completed must be true or false, got 2"]),
    ("keep_score_cache=no", "plan", ["keep_score_cache=no"], 2, ["keep_score_cache must be true or false, got 'no'"]),
    # integers only in range
    ("max_failures=abc", "plan", ["max_failures=abc"], 2, ["max_failures must be an integer >= 1, got 'abc'", "max_failures=3"]),
    ("max_failures=-1", "plan", ["max_failures=-1"], 2, ["max_failures must be an integer >= 1, got -1"]),
    ("max_failures=0", "plan", ["max_failures=0"], 2, ["max_failures must be an integer >= 1, got 0"]),
    ("max_length=long", "plan", ["max_length=long"], 2, ["max_length must be an integer >= 1 or null, got 'long'"]),
    ("max_length=-5", "plan", ["max_length=-5"], 2, ["max_length must be an integer >= 1 or null, got -5"]),
    ("seed=-1", "plan", ["seed=-1"], 2, ["seed must be an integer >= 0, got -1", "seed=0"]),
    ("seed 23 digits", "plan", ["seed=12345678901234567890123"], 2, ["seed must be an integer in [0, 4294967295], got 12345678901234567890123"]),
    ("seed=abc", "plan", ["seed=abc"], 2, ["seed must be an integer >= 0, got 'abc'"]),
    ("seed=1.5", "plan", ["seed=1.5"], 2, ["seed must be an integer >= 0, got 1.5"]),
    ("n_eval_samples 23 digits", "plan", ["n_eval_samples=12345678901234567890123"], 2,
     ["n_eval_samples must be an integer in [0, 2147483647], got 12345678901234567890123"]),
    ("n_eval_samples=-1", "plan", ["n_eval_samples=-1"], 2, ["n_eval_samples must be an integer >= 0, got -1"]),
    ("batch_size=0", "plan", ["batch_size=0"], 2, ["batch_size must be an integer >= 1, got 0"]),
    ("batch_size=x", "plan", ["batch_size=x"], 2, ["batch_size must be an integer >= 1, got 'x'"]),
    ("batch_size in a model setting", "plan", ["model=bad_bs"], 2, ["batch_size must be an integer >= 1, got 0"]),
    ("num_trials=0", "plan", ["num_trials=0"], 2, ["num_trials must be an integer >= 1, got 0"]),
    ("max_parallel=0", "plan", ["max_parallel=0"], 2, ["max_parallel must be an integer >= 1 or null, got 0"]),
    ("output_dir=", "cli", ["output_dir="], 2, ["output_dir is empty", "output_dir=results"]),
    # enums only their values
    ("scoring=meen", "plan", ["scoring=meen"], 2, ["scoring must be one of sum, mean,", "got 'meen' (did you mean 'mean'?)"]),
    ("dtype=fp16", "plan", ["dtype=fp16"], 2, ["dtype must be one of float32, float16, bfloat16, got 'fp16'"]),
    # nested mappings only known keys
    ("templates=5", "cli", ["templates=5"], 2, ["templates must be a list of strings or a string or {<task>:", "got 5"]),
    ("templates={copa_dmo: default}", "plan", ["templates={copa_dmo: default}"], 2,
     ["unknown task 'copa_dmo' (did you mean 'copa_demo'?)", "this job's tasks: copa_demo"]),
    # values that are ignored or contradict another
    ("unconditional_prompt= under unconditional-norm", "plan", ["scoring=unconditional-norm", "unconditional_prompt="], 2,
     ["unconditional_prompt='': scoring=unconditional-norm", "must not be empty"]),
    ("calibration_options without a calibrator", "plan", ["calibration_options={copa_demo: ['premise::']}"], 2,
     ["calibration_options=", "calibrator is null", "calibrator=average_option"]),
    ("trial=1 without split_trials", "plan", ["nshot=2", "trial=1"], 2, ["trial=1: trial is set by split_trials=true", "split_trials=true trial=1"]),
    ("checkpoint=1000 without checkpoints", "plan", ["checkpoint=1000"], 2, ["checkpoint=1000: no model of this sweep (random) has 'checkpoints'"]),
    ("calibrator=null on a setting with options (recalc's)", "plan", ["task=demo_calib", "calibrator=null"], 0, []),
    # two jobs, one result dir
    ("num_trials=2,3", "plan", ["nshot=2", "num_trials=2,3"], 2, ["num_trials=2,3: these values give the same result"]),
    ("task=a task=b", "cli", ["task=copa_demo", "task=nli_demo"], 2, ["'task=copa_demo' and 'task=nli_demo': task is given twice", "task=copa_demo,nli_demo"]),
    # Hydra's own errors in the app's words
    ("output_dir=~/x", "cli", ["output_dir=~/x"], 2, ["cannot parse the override 'output_dir=~/x'", "'output_dir=\"~/x\"'"]),
    ("nshot=[0,2", "plan", ["nshot=[0,2"], 2, ["cannot parse the override 'nshot=[0,2'", "close the bracket"]),
    ("num_trial=2", "cli", ["num_trial=2"], 2, ["unknown key 'num_trial' (did you mean 'num_trials'?)"]),
    ("model.nam=x", "plan", ["model.nam=x"], 2, ["unknown key 'model.nam' (did you mean 'model.name'?)"]),
    ("misspelt model", "plan", ["model=tiny_gtp2"], 2, ["Unknown model 'tiny_gtp2' (did you mean 'tiny_gpt2'?)"]),
    ("misspelt task", "plan", ["task=copa_dmo"], 2, ["Unknown task 'copa_dmo' (did you mean 'copa_demo'?)"]),
    ("misspelt model in a sweep", "plan", ["model=random,tiny_gtp2"], 2, ["Unknown model 'tiny_gtp2' (did you mean 'tiny_gpt2'?)"]),
    # what depends on the model, checked where its config is read at planning
    ("max_length above the model's positions", "plan", ["model=pos512", "max_length=100000"], 2,
     ["max_length=100000: model 'pos512' has 512 positions", "max_length=null"]),
    ("max_length within the model's positions", "plan", ["model=pos512", "max_length=512"], 0, []),
    ("device=cuda:5 in a local sweep", "plan", ["model=pos512", "device=cuda:5"], 2, ["device=cuda:5: this machine has", "device=auto"]),
    ("device=cuda in a local sweep without a GPU", "plan", ["model=pos512", "device=cuda"], 2, ["device=cuda: this machine has no GPU"]),
    ("device=cuda in a SLURM sweep planned without GPUs", "main", ["model=pos512", "device=cuda", "hydra/launcher=submitit_slurm"], 0, []),
    ("weights dir with an invalid config.json", "plan", ["model=badjson"], 2, ["config.json is not valid JSON", "damaged"]),
    ("weights dir without weight files", "plan", ["model=noweights"], 2, ["holds no weight files (*.safetensors"]),
    ("task data the user cannot read", "user", ["--config-dir", "{conf}", "task=unreadable"], 2, ["cannot read task data file", "chmod a+r"]),
    # intended: allowed, with a warning at planning and a rule in docs/parameters.md#data-rules
    ("an empty evaluation file", "plan", ["task=empty_eval"], 0, ["split 'validation' has no rows: its metrics will be over n=0"]),
    ("an empty train file with nshot=2", "plan", ["task=empty_train", "nshot=2"], 0, ["nshot=2 but its demonstration split has no rows"]),
    ("duplicate example ids", "plan", ["task=dup_ids"], 0, ["2 example ids are repeated (e.g. '7')"]),
    # the other commands
    ("recalc --scoring meen", "cmd", ["recalc", "nowhere", "--scoring", "meen"], 2, ["--scoring meen: unknown scoring (did you mean 'mean'?)"]),
    ("report --long x.xyz", "cmd", ["report", "nowhere", "--long", "x.xyz"], 2, ["--long x.xyz: unknown table format '.xyz'", ".csv"]),
]


def _copa_like(conf: Path, name: str, train: list[str], validation: list[str]) -> None:
    data = conf / "task_def" / "data" / name
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.jsonl").write_text("".join(line + "\n" for line in train))
    (data / "validation.jsonl").write_text("".join(line + "\n" for line in validation))
    text = (conf_dir() / "task_def" / "copa_demo.yaml").read_text().replace("data/copa_demo/", f"data/{name}/")
    (conf / "task_def" / f"{name}.yaml").write_text(text)
    (conf / "task" / f"{name}.yaml").write_text(f"run_name: battery\ntasks: [{name}]\n")


@pytest.fixture(scope="module")
def battery_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config dir with what the cases need: models with weights dirs (positions, damaged, empty), task
    definitions with empty or repeated data."""
    root = tmp_path_factory.mktemp("battery")
    conf = root / "conf"
    for d in ("model", "task", "task_def"):
        (conf / d).mkdir(parents=True)
    for name, config, weights in (("pos512", '{"model_type": "gpt2", "n_positions": 512}', True), ("badjson", "{not json", True),
                                  ("noweights", "{}", False)):
        w = root / "weights" / name
        w.mkdir(parents=True)
        (w / "config.json").write_text(config)
        if weights:
            (w / "model.safetensors").write_text("never loaded at planning")
        (conf / "model" / f"{name}.yaml").write_text(f"name: {name}\npredictor: clm\nweights: {w}\n")
    (conf / "task" / "demo_calib.yaml").write_text("run_name: battery\ntasks: [copa_demo]\n"
                                                   "eval: {calibrator: average_option, calibration_options: {copa_demo: ['premise::']}}\n")
    (conf / "model" / "bad_bs.yaml").write_text("name: bad_bs\npredictor: random\neval: {batch_size: 0}\n")
    rows = (conf_dir() / "task_def" / "data" / "copa_demo" / "validation.jsonl").read_text().splitlines()
    train = (conf_dir() / "task_def" / "data" / "copa_demo" / "train.jsonl").read_text().splitlines()
    _copa_like(conf, "empty_eval", train, [])
    _copa_like(conf, "empty_train", [], rows)
    dup = [json.dumps({**json.loads(r), "idx": 7 if i < 3 else json.loads(r)["idx"]}) for i, r in enumerate(rows)]
    _copa_like(conf, "dup_ids", train, dup)
    return conf


def _with_base(args: list[str]) -> list[str]:
    """model=random task=copa_demo dry_run=true, less what ``args`` set themselves, then ``args``."""
    keys = {a.split("=", 1)[0] for a in args}
    return [o for o in [*BASE[1:], "dry_run=true"] if o.split("=", 1)[0] not in keys] + list(args)


def _in_process(args: list[str], conf: Path, out: Path) -> tuple[int, list[str]]:
    """(exit status the sweep would give, its error lines or warnings) of planning ``args`` in-process."""
    from fewshot_eval.hydra_errors import user_error_message
    from fewshot_eval.plan.planner import ERROR

    try:
        planner, jobs = plan([*_with_base(args), f"output_dir={out}"], config_dirs=[conf])
    except Exception as e:  # noqa: BLE001 - what the app turns into its one line
        message = user_error_message(e)
        assert message is not None, f"not a user error (the app would print a traceback): {e!r}"
        return 2, [message]
    errors = list(dict.fromkeys(j.detail for j in jobs if j.status == ERROR))
    return (2, errors) if errors else (0, list(getattr(planner, "warnings", {})))


@pytest.mark.parametrize("case", CASES, ids=[f"{c[1]}: {c[0]}" for c in CASES])
def test_every_bad_input_is_refused_before_launch(case: tuple, battery_conf: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    name, how, args, code, words = case
    if how == "plan" and any(a.startswith("device=cuda") for a in args):
        import torch

        if torch.cuda.device_count() > (5 if "device=cuda:5" in args else 0):
            pytest.skip(f"this machine has the GPU that {name} asks for")
    if how in ("plan", "main"):  # "main": a SLURM sweep's dry run plans without sbatch (a warning)
        got, lines = _in_process(args, battery_conf, tmp_path / "out")
        assert got == code, (name, lines)
        if code == 2:
            assert len(lines) == 1 and "\n" not in lines[0], lines  # one line
        if words:
            assert any(all(w in line for w in words) for line in lines), (words, lines)
        return
    workdir = tmp_path / "work"
    workdir.mkdir()
    if how == "user":
        proc = _as_other_user(request, battery_conf, [a.replace("{conf}", "{}") for a in args])
        workdir = proc.workdir
    elif how == "cmd":
        proc = run_cli(args, workdir, check=False)
    else:
        proc = run_cli(["-m", *_with_base(args)], workdir, check=False)
    rejected(proc, workdir, *words)


def _as_other_user(request: pytest.FixtureRequest, conf: Path, args: list[str]) -> subprocess.CompletedProcess:
    """Plan ``args`` as a second Unix user, with a copy of the battery's config dir whose task data only root can read."""
    from second_user import home_of, run_as

    user = request.getfixturevalue("other_user")
    shared = request.getfixturevalue("shared_dir")
    request.getfixturevalue("traversable")
    mine = shared / "conf"
    shutil.copytree(conf, mine)
    _copa_like(mine, "unreadable", ["{}"], ["{}"])
    for d in (shared, *[p for p in mine.rglob("*") if p.is_dir()], mine):
        d.chmod(0o755)
    for f in mine.rglob("*"):
        if f.is_file():
            f.chmod(0o644)
    (mine / "task_def" / "data" / "unreadable" / "validation.jsonl").chmod(0o600)  # root's, not the user's
    work = shared / "work"
    work.mkdir()
    shutil.chown(work, user=user)
    proc = run_as(user, ["-m", "fewshot_eval", "-m", "model=random", "dry_run=true", *[a.format(mine) for a in args]], work, home_of(user, shared))
    proc.workdir = work  # type: ignore[attr-defined]
    return proc


def test_the_parameter_tables_of_the_docs_are_the_schema() -> None:
    """docs/parameters.md shows the schema's types and ranges (regenerate: print param_schema.markdown())."""
    from fewshot_eval.param_schema import markdown

    assert markdown() in (Path(__file__).resolve().parents[1] / "docs" / "parameters.md").read_text()


# ---- 3. names that become directories ----------------------------------------------------------
@pytest.mark.parametrize(
    "override, fragment",
    [
        ("task.run_name=../up", "task/copa_demo.yaml: run_name '../up' is used as a directory name"),
        ("model.name=.hidden", "model/random.yaml: name '.hidden' is used as a directory name"),
    ],
)
def test_setting_names_that_escape_or_hide_a_directory_are_rejected(workdir: Path, override: str, fragment: str) -> None:
    rejected(run_cli(DRY + [override], workdir, check=False), workdir, fragment, "without '/', '\\' or '..'")


def test_setting_name_rule(tmp_path: Path) -> None:
    for ok in ("demo", "a.b", "x-1_2"):
        check_setting_name(ok, "run_name", "task/t.yaml")
    for bad in ("", "..", "../x", "a/b", "a\\b", ".x", "a..b", None):
        with pytest.raises(ConfigError, match="is used as a directory name"):
            check_setting_name(bad, "run_name", "task/t.yaml")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / ".m.yaml").write_text("name: m\npredictor: random\n")
    with pytest.raises(ConfigError, match=r"model/\.m\.yaml: model '\.m'"):
        plan(["model=.m", f"output_dir={tmp_path}"], config_dirs=[tmp_path])


# ---- 4. swept values that cannot change the result ---------------------------------------------
def test_sweeping_a_key_outside_the_identity_is_an_error_not_a_dropped_job(workdir: Path) -> None:
    line = rejected(run_cli(DRY + ["model.name=a,b"], workdir, check=False), workdir, "model.name=a,b: these values give the same result")
    assert "not part of a result's identity" in line
    rejected(run_cli(DRY + ["nshot=0,2", "batch_size=4,8"], workdir, check=False), workdir, "batch_size=4,8: these values give the same result")


def test_combos_that_differ_only_in_nshot_may_share_a_result() -> None:
    d = Path("/r/demo/random/copa_demo/64shot.abcdef12")
    check_same_result(["model=random", "nshot=64"], ["model=random", "nshot=128"], d)  # pool size caps both: fine
    with pytest.raises(ConfigError, match=r"device=cpu,cuda: these values give the same result"):
        check_same_result(["nshot=2", "device=cpu"], ["nshot=2", "device=cuda"], d)


# ---- 5. recalc and report ----------------------------------------------------------------------
def test_recalc_and_report_reject_what_is_not_a_result_in_one_line(workdir: Path) -> None:
    run_cli(BASE + ["nshot=0"], workdir)
    [res] = list((workdir / "results").rglob("results.json"))
    elsewhere = workdir / "copied" / res.parent.name
    shutil.copytree(res.parent, elsewhere)
    (workdir / "empty").mkdir()
    foreign = workdir / "foreign"
    foreign.mkdir()
    (foreign / "results.json").write_text(json.dumps({"accuracy": 1}))
    cases = [
        (["recalc", "empty", "--scoring", "mean"], "no results under empty"),
        (["recalc", str(workdir / "nowhere"), "--scoring", "mean"], "nowhere: no such file or directory"),
        (["recalc", "copied", "--scoring", "mean"], "is not in fewshot-eval's result layout"),
        (["recalc", "foreign", "--scoring", "mean"], "is not a fewshot-eval result"),
        (["report", str(workdir / "reslts")], "reslts: no such file or directory"),
        (["report", f"{workdir}/*/nothing*"], "no match as a glob pattern"),
    ]
    for args, fragment in cases:
        proc = run_cli(args, workdir, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr)
        [line] = [x for x in proc.stderr.splitlines() if x.strip()]
        assert line.startswith("fewshot-eval: error:") and fragment in line, (args, line)
        if args[0] == "recalc":
            assert "<output_dir>/<run_name>/<model>/<task setting>/<nshot>shot.<id>" in line or "no such file" in line
    assert len(list(workdir.rglob("results.json"))) == 3, "recalc wrote nothing"
    out = run_cli(["report", f"{workdir}/results/*/random"], workdir).stdout  # an absolute glob works
    assert "1 results from" in out


# ---- 6. SLURM's client commands ----------------------------------------------------------------
def test_slurm_launcher_without_sbatch_fails_at_planning_and_dry_run_warns(workdir: Path) -> None:
    env = {"PATH": os.path.dirname(sys.executable)}
    args = BASE + ["hydra/launcher=submitit_slurm"]
    rejected(run_cli(args, workdir, check=False, env=env), workdir, "sbatch not found: hydra/launcher=submitit_slurm needs SLURM's client commands on PATH",
             "hydra/launcher=local")
    assert not (workdir / "results").exists()
    proc = run_cli(args + ["dry_run=true"], workdir, env=env)
    assert proc.stderr.count("fewshot-eval: warning: sbatch not found") == 1 and "Dry run: 1 job planned" in proc.stdout


def test_slurm_check_changes_nothing_when_sbatch_exists() -> None:
    assert check_slurm_client("submitit_slurm", "", False, which=lambda _: "/usr/bin/sbatch") is None
    assert check_slurm_client("local", "", False, which=lambda _: None) is None
    assert "dry run" in (check_slurm_client("submitit_slurm", "", True, which=lambda _: None) or "")
    with pytest.raises(ConfigError, match="sbatch not found"):
        check_slurm_client(None, "hydra_plugins.fewshot_eval_plugins.slurm_launcher.SlurmPoolLauncher", False, which=lambda _: None)


# ---- 7. warnings once per sweep ----------------------------------------------------------------
def test_a_baseline_warning_is_printed_once_per_sweep_not_per_trial(workdir: Path) -> None:
    proc = run_cli(["-m", "models=baselines", "task=copa_demo,nli_demo", "nshot=0,2", "scoring=mean"], workdir)
    out = proc.stdout + proc.stderr
    text = "predictor 'random' is a baseline: scoring=mean ignored"
    assert 1 <= out.count(text) <= 2, out[-3000:]  # once at planning (+ once by the process that ran the trials)
    assert "fewshot-eval: warning: " + text in proc.stderr
    metrics = next(p for p in (workdir / "results").rglob("metrics.json") if "/random/" in str(p))
    assert any(text in w for w in json.loads(metrics.read_text())["info"]["warnings"]), "each trial still records it"


def test_result_layout_check() -> None:
    res = {"run_name": "demo", "model": "random", "task_setting": "copa_demo", "nshot": 2, "tasks": [], "trials": [0], "params": {}, "fingerprint": "f"}
    check_result_layout(Path("/o/demo/random/copa_demo/2shot.0a1b2c3d"), res)
    for bad in (Path("/o/demo/random/other/2shot.0a1b2c3d"), Path("/o/demo/random/copa_demo/0shot.0a1b2c3d"), Path("/x/2shot.0a1b2c3d")):
        with pytest.raises(ConfigError, match="result layout"):
            check_result_layout(bad, res)

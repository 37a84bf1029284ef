"""Planning: grid expansion, presets, identities, statuses -- computed before anything launches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fewshot_eval.api import plan
from fewshot_eval.config import ConfigError
from fewshot_eval.plan.planner import NOT_APPLICABLE, RUN, SKIP_COMPLETE, SKIP_STALE
from fewshot_eval.store import layout
from fewshot_eval.store.atomic import write_json


def keys(jobs):
    return sorted((j.unit.model_key, j.unit.task_key, j.unit.nshot) for j in jobs)


def test_cartesian_product_of_models_tasks_nshot(tmp_path: Path) -> None:
    _, jobs = plan(["model=random,majority", "task=copa_demo,nli_demo,pawsx_default", "nshot=0,2", f"output_dir={tmp_path}"])
    assert len(jobs) == 12 and len(set(keys(jobs))) == 12
    assert all(j.status == RUN for j in jobs)
    by_nshot = {j.unit.nshot: j.unit.trials for j in jobs}
    assert by_nshot == {0: [0], 2: [0, 1, 2]}  # nshot=0 runs one trial; num_trials=3 otherwise


def test_presets_combine_and_command_line_overrides_them(tmp_path: Path) -> None:
    _, jobs = plan(["models=baselines", "tasks=demo", "nshot=0,2", f"output_dir={tmp_path}"])
    assert {j.unit.model_key for j in jobs} == {"random", "majority"}
    assert {j.unit.task_key for j in jobs} == {"copa_demo", "nli_demo", "pawsx_default"}
    assert len(jobs) == 12
    _, jobs = plan(["models=baselines", "tasks=demo", "model=majority", f"output_dir={tmp_path}"])
    assert {j.unit.model_key for j in jobs} == {"majority"} and len(jobs) == 3


def test_glob_preset_selects_every_option(tmp_path: Path) -> None:
    _, jobs = plan(["models=all", "task=copa_demo", f"output_dir={tmp_path}"])
    packaged = {p.stem for p in (Path(__file__).parents[1] / "conf" / "model").glob("*.yaml")}
    assert {j.unit.model_key.split("__step")[0] for j in jobs} == packaged  # checkpoint sweeps: one setting per checkpoint


def test_yaml_list_in_a_preset_is_rejected(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "models").mkdir(parents=True)
    (conf / "models" / "listy.yaml").write_text("# @package _global_\nhydra:\n  sweeper:\n    params:\n      model: [random, majority]\n")
    with pytest.raises(ConfigError, match=r"models=listy: hydra.sweeper.params.model must be a sweep string.*model: random,majority"):
        plan(["models=listy", f"output_dir={tmp_path}"], config_dirs=[conf])


def test_unknown_names_list_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown model 'gpt5' \(did you mean 'gpt2'\?\)\. Available: .*majority, .*random"):
        plan(["model=random,gpt5", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"Unknown task 'nope'. Available: .*copa_demo"):
        plan(["model=random", "task=nope,copa_demo", f"output_dir={tmp_path}"])


def test_bad_nshot_names_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nshot must be an integer >= -1.*-5"):
        plan(["model=random", "nshot=0,-5", f"output_dir={tmp_path}"])


def test_task_setting_restricts_nshot(tmp_path: Path) -> None:
    _, jobs = plan(["model=random", "task=copa_0shot", "nshot=0,2", f"output_dir={tmp_path}"])
    status = {j.unit.nshot: j.status for j in jobs}
    assert status == {0: RUN, 2: NOT_APPLICABLE}


def test_identity_separates_settings_that_change_numbers(tmp_path: Path) -> None:
    base = ["model=random", "task=copa_demo", "nshot=2", f"output_dir={tmp_path}"]
    _, [a] = plan(base)
    _, [a2] = plan(base + ["batch_size=64", "num_trials=5"])  # cannot change the numbers (trials are kept apart)
    assert a.unit.result_dir == a2.unit.result_dir
    dirs = {a.unit.result_dir}
    for extra in (["scoring=mean"], ["train_sep=' '"], ["seed=1"], ["n_eval_samples=5"], ["calibrator=average_option"],
                  ["predictor=majority"], ["description=Answer the question."]):
        _, [b] = plan(base + extra)
        assert b.unit.result_dir not in dirs, extra
        dirs.add(b.unit.result_dir)
    assert str(a.unit.result_dir).startswith(str(tmp_path / "demo" / "random" / "copa_demo" / "2shot."))


def test_complete_partial_and_stale_statuses(tmp_path: Path) -> None:
    args = ["model=random", "task=copa_demo", "nshot=2", f"output_dir={tmp_path}"]
    _, [job] = plan(args)
    u = job.unit
    write_json(layout.trial_dir(u.result_dir, 0) / layout.METRICS, {"fingerprint": u.fingerprint, "metrics": {}})
    _, [job] = plan(args)
    assert job.status == RUN and "trials [0] already done" in job.detail
    # results.json lists its files since 0.2.0 (an empty map: nothing to check); without one it is a 0.1.0 result, checked by content
    write_json(u.result_dir / layout.RESULTS, {"fingerprint": u.fingerprint, "trials": [0, 1, 2], "files": {}, "results": {}})
    _, [job] = plan(args)
    assert job.status == SKIP_COMPLETE
    _, [job] = plan(args + ["num_trials=4"])  # more trials wanted: same dir, not complete any more
    assert job.status == RUN and job.unit.result_dir == u.result_dir
    write_json(u.result_dir / layout.RESULTS, {"fingerprint": "from-other-data", "trials": [0, 1, 2], "files": {}, "results": {}})
    _, [job] = plan(args)
    assert job.status == SKIP_STALE
    _, [job] = plan(args + ["override_completed=true"])
    assert job.status == RUN


def test_split_trials_makes_one_job_per_trial(tmp_path: Path) -> None:
    args = ["model=random", "task=copa_demo", "nshot=0,2", "split_trials=true", f"output_dir={tmp_path}"]
    _, jobs = plan(args)
    assert sorted((j.unit.nshot, tuple(j.unit.trials)) for j in jobs) == [(0, (0,)), (2, (0,)), (2, (1,)), (2, (2,))]
    assert all(f"trial={j.unit.trials[0]}" in j.overrides for j in jobs if j.unit.nshot == 2)
    two = [j for j in jobs if j.unit.nshot == 2]
    write_json(layout.trial_dir(two[1].unit.result_dir, 1) / layout.METRICS, {"fingerprint": two[1].unit.fingerprint})
    _, jobs = plan(args)
    assert sorted((j.unit.nshot, j.unit.trials[0], j.status) for j in jobs) == [
        (0, 0, RUN), (2, 0, RUN), (2, 1, SKIP_COMPLETE), (2, 2, RUN)]


def test_user_config_dir_adds_models_tasks_and_groups(tmp_path: Path, user_conf: Path) -> None:
    _, jobs = plan(["models=mine", "task=my_copa,copa_demo", f"output_dir={tmp_path}"], config_dirs=[user_conf])
    assert keys(jobs) == [("majority", "copa_demo", 0), ("majority", "my_copa", 0), ("my_random", "copa_demo", 0), ("my_random", "my_copa", 0)]


def test_job_config_equals_hydra_composition(tmp_path: Path) -> None:
    """The launcher's cheap per-job config is what Hydra's full composition gives."""
    from omegaconf import OmegaConf

    from fewshot_eval.plan.planner import planned_id_override

    planner, jobs = plan(["model=random,tiny_gpt2", "task=copa_demo,pawsx_calib", "nshot=0,2", "scoring=mean", f"output_dir={tmp_path}"])
    for i, j in enumerate([*jobs, *reversed(jobs)]):
        overrides = [*j.overrides, planned_id_override(j.unit.id_digest[:16])] if i % 2 else j.overrides  # as launched
        fast = OmegaConf.to_container(planner.job_config(overrides))
        reused = OmegaConf.to_container(planner.job_config(overrides, reuse=True))  # one config, set again per job
        full = OmegaConf.to_container(planner.loader.load_sweep_config(planner.base, overrides))
        for c in (fast, reused, full):
            c["hydra"]["runtime"].pop("output_dir", None)
        assert fast == full, overrides
        assert reused == full, overrides


def test_a_local_jobs_planned_unit_is_the_one_its_config_resolves_to(tmp_path: Path) -> None:
    """The local launcher hands each job its planned JobUnit (plan.unit.planned_unit) instead of resolving the
    job's config again: both must be the same unit -- checkpoints, split trials, nshot above the pool, a
    per-task param and run values set on the command line included."""
    from hydra.core.hydra_config import HydraConfig

    from fewshot_eval.run.job import unit_from_config

    planner, jobs = plan(["model=random,pythia_160m_steps", "checkpoint=1000", "task=copa_demo,pawsx_calib", "nshot=0,2,1000",
                          "split_trials=true", "scoring=mean", "seed=1,7", f"output_dir={tmp_path}"])
    assert len(jobs) > 20 and {j.unit.requested_nshot for j in jobs} > {None}
    hc = HydraConfig.instance()
    old = hc.cfg
    try:
        for j in jobs:
            cfg = planner.job_config(j.overrides, reuse=True)
            hc.set_config(cfg)
            assert unit_from_config(cfg) == j.unit, j.overrides
    finally:
        hc.cfg = old


@pytest.mark.parametrize(
    "override, message",
    [
        ("scoring=best", r"scoring must be one of sum, mean, suffix, unconditional-norm, char-norm, got 'best'"),
        ("templates={copa_demo: fancy}", r"unknown template 'fancy' for task 'copa_demo'. Valid: default"),
        ("calibrator=platt", r"platt"),
    ],
)
def test_bad_eval_params_fail_at_planning(tmp_path: Path, override: str, message: str) -> None:
    """A value of the wrong type or outside its enum refuses the plan (fewshot_eval/param_schema.py); one the
    task data decides (a template name) is an error row. The sweep exits 2 and launches nothing either way."""
    try:
        _, [job] = plan(["model=random", "task=copa_demo", override, f"output_dir={tmp_path}"])
    except ConfigError as e:
        assert re.search(message, str(e)), str(e)
        return
    assert job.status == "error" and re.search(message, job.detail), job.detail


def test_several_presets_plan_the_union_of_their_settings(tmp_path: Path) -> None:
    _, jobs = plan(["models=demo,baselines", "task=copa_demo", f"output_dir={tmp_path}"])
    assert [j.unit.model_key for j in jobs] == ["random", "majority", "tiny_gpt2"]  # first appearance, each once
    _, jobs = plan(["model=random", "tasks=demo,multilingual_multichoice", f"output_dir={tmp_path}"])
    assert [j.unit.task_key for j in jobs] == ["copa_demo", "nli_demo", "pawsx_default", "pawsx_calib"]
    _, jobs = plan(["models=baselines,all", "task=copa_demo", f"output_dir={tmp_path}"])  # glob(*) expanded by Hydra
    packaged = {p.stem for p in (Path(__file__).parents[1] / "conf" / "model").glob("*.yaml")}
    assert [j.unit.model_key for j in jobs][:2] == ["random", "majority"] and {j.unit.model_key.split("__step")[0] for j in jobs} == packaged
    _, jobs = plan(["models=demo,baselines", "model=tiny_gpt2", "task=copa_demo", f"output_dir={tmp_path}"])
    assert [j.unit.model_key for j in jobs] == ["tiny_gpt2"]  # a command-line value still beats the presets'


def test_union_of_a_user_preset_and_a_packaged_one(tmp_path: Path, user_conf: Path) -> None:
    _, jobs = plan(["models=mine,baselines", "task=copa_demo", f"output_dir={tmp_path}"], config_dirs=[user_conf])
    assert [j.unit.model_key for j in jobs] == ["my_random", "majority", "random"]


def test_presets_that_cannot_be_combined_say_why(tmp_path: Path, user_conf: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown models preset 'nope'. Available: all, baselines, bloom, demo, dense_vs_moe_lang16, gpt2, large, llama, "
                                          r"medium, opt, pythia, small, xglm\.$"):
        plan(["models=demo,nope", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"'experiment=demo,baselines': select one experiment per run -- an experiment sets run params"):
        plan(["experiment=demo,baselines", f"output_dir={tmp_path}"])
    (user_conf / "models" / "heavy.yaml").write_text("# @package _global_\nnum_trials: 9\nhydra:\n  sweeper:\n    params:\n      model: random\n")
    with pytest.raises(ConfigError, match=r"models preset 'heavy' sets more than a sweep \(num_trials\)"):
        plan(["models=heavy,baselines", f"output_dir={tmp_path}"], config_dirs=[user_conf])
    (user_conf / "models" / "withshots.yaml").write_text("# @package _global_\nhydra:\n  sweeper:\n    params:\n      model: random\n      nshot: 0,2\n")
    with pytest.raises(ConfigError, match=r"sweep different keys \(withshots sets model, nshot; baselines sets model\)"):
        plan(["models=withshots,baselines", f"output_dir={tmp_path}"], config_dirs=[user_conf])


def test_a_list_as_model_or_task_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'model=\[\]' selects no model: pick at least one.*Available: .*majority, .*random, tiny_gpt2(, \w+)*\.$"):
        plan(["model=[]", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"'task=\[copa_demo,nli_demo\]' is a list: to run each write task=copa_demo,nli_demo with -m"):
        plan(["task=[copa_demo,nli_demo]", f"output_dir={tmp_path}"])


def test_the_plan_shows_the_resources_a_slurm_job_really_gets(workdir: Path) -> None:
    """hydra.launcher values apply to every pool, and max_parallel overrides each model's throttle."""
    from cli_helpers import run_cli

    args = ["-m", "model=random", "task=copa_demo", "nshot=0", "dry_run=true", "hydra/launcher=submitit_slurm"]
    own = run_cli(args, workdir).stdout
    assert "1n x 0g x 1c 10m | max 8" in own, own  # random's own resources
    forced = run_cli(args + ["hydra.launcher.timeout_min=30", "hydra.launcher.cpus_per_task=4", "max_parallel=2"], workdir).stdout
    assert "1n x 0g x 4c 30m | max 2" in forced, forced

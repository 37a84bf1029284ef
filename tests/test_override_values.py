"""Values as Hydra's override grammar and OmegaConf read them: what the sweep plans for a quoted or
interpolated value is what its job gets (https://hydra.cc/docs/advanced/override_grammar/basic/).
In-process: planning (``fewshot_eval.api.plan``) and the job's own config (``Planner.job_config``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fewshot_eval.api import plan


def job_unit(planner, job):  # noqa: ANN001, ANN201
    """The unit the job resolves from its own config (as ``fewshot_eval.run.job.main`` does), after its planned-id check."""
    from hydra.core.hydra_config import HydraConfig

    from fewshot_eval.launch.dispatch import planned_id
    from fewshot_eval.run.job import check_planned, unit_from_config

    cfg = planner.job_config([*job.overrides, *planned_id(job)])
    hc = HydraConfig.instance()
    old = hc.cfg
    try:
        hc.set_config(cfg)
        unit = unit_from_config(cfg)
    finally:
        hc.cfg = old
    check_planned(cfg, unit)  # the job refuses to write another result than planned
    return unit


@pytest.mark.parametrize("value, expected", [
    ("'${model.name}: '", "random: "),  # an interpolation, resolved in the job's config
    ("'Say \\${x}'", "Say ${x}"),  # an escaped one: the text itself
    ("'1e5'", "1e5"),  # quoted: a string, not a float
])
def test_a_quoted_or_interpolated_value_is_planned_as_the_job_reads_it(tmp_path: Path, value: str, expected: str) -> None:
    planner, [job] = plan(["model=random", "task=copa_demo", "nshot=0", f"description={value}", f"output_dir={tmp_path}"])
    assert job.unit.params["description"] == expected
    unit = job_unit(planner, job)
    assert unit.params["description"] == expected and unit == job.unit


def test_a_quoted_checkpoint_sweep_model_or_a_null_checkpoint_expands_to_every_checkpoint(tmp_path: Path) -> None:
    _, plain = plan(["model=pythia_160m_steps", "task=copa_demo", "nshot=0", f"output_dir={tmp_path}"])
    _, quoted = plan(["model='pythia_160m_steps'", "task=copa_demo", "nshot=0", f"output_dir={tmp_path}"])
    assert len(plain) == 8 and [j.unit.result_dir for j in quoted] == [j.unit.result_dir for j in plain]
    _, unset = plan(["model=pythia_160m_steps", "task=copa_demo", "nshot=0", "checkpoint=null", f"output_dir={tmp_path}"])
    assert [j.unit.result_dir for j in unset] == [j.unit.result_dir for j in plain]  # null: no step picked, as without checkpoint=


def test_a_job_list_path_is_read_as_hydra_reads_it(tmp_path: Path) -> None:
    from fewshot_eval.plan.job_list import job_row, write_job_list

    _, jobs = plan(["model=random,majority", "task=copa_demo", "nshot=0", "description='1e5'", f"output_dir={tmp_path / 'out'}"])
    listed = tmp_path / "my lists, 2" / "missing.csv"
    write_job_list(listed, [job_row(j, "missing", []) for j in jobs])
    escaped = str(listed).replace("\\", "\\\\").replace(" ", "\\ ").replace(",", "\\,")
    for arg in (f"job_list='{listed}'", f'job_list="{listed}"', f"job_list={escaped}"):
        _, again = plan([arg])
        assert [j.unit.result_dir for j in again] == [j.unit.result_dir for j in jobs], arg
        assert {j.unit.params["description"] for j in again} == {"1e5"}


@pytest.mark.parametrize("name", ["missing.csv", "my lists, 2/it's=1.csv"])
def test_the_command_that_runs_a_written_job_list_reads_its_path_back(tmp_path: Path, name: str) -> None:
    import shlex

    from fewshot_eval.plan.job_list import given
    from fewshot_eval.report.sweep_status import write_missing

    _, jobs = plan(["model=random", "task=copa_demo", "nshot=0", f"output_dir={tmp_path / 'out'}"])
    listed = tmp_path / name
    line = write_missing(listed, jobs, [])
    words = shlex.split(line.split("Run them: ", 1)[1])
    assert words[:2] == ["fewshot-eval", "-m"] and given(words[2:]) == str(listed), line
    _, again = plan(words[2:])
    assert [j.unit.result_dir for j in again] == [j.unit.result_dir for j in jobs]


def test_an_interpolated_value_of_the_base_config_is_resolved_per_job(tmp_path: Path) -> None:
    """An experiment's ``description: "${model.name}: "`` is each job's own model name, not the first model's."""
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "named.yaml").write_text(
        '# @package _global_\ndescription: "${model.name} (${nshot}-shot): "\n'
        "hydra:\n  sweeper:\n    params:\n      model: random,majority\n      task: copa_demo\n      nshot: 0,2\n")
    planner, jobs = plan(["experiment=named", f"output_dir={tmp_path / 'out'}"], config_dirs=[conf])
    assert {(j.unit.model_key, j.unit.nshot, j.unit.params["description"]) for j in jobs} == {
        (m, n, f"{m} ({n}-shot): ") for m in ("random", "majority") for n in (0, 2)}
    for job in jobs:
        assert job_unit(planner, job) == job.unit  # the whole unit: the local launcher hands the job the planned one


def test_a_setting_that_interpolates_other_values_of_the_config_is_resolved_per_job(tmp_path: Path) -> None:
    """A task setting's ``${model.name}``, a model setting's ``${nshot}``: each job's own values, as its config
    resolves them (a setting that reads only itself or ``oc.env`` is still loaded once)."""
    conf = tmp_path / "conf"
    (conf / "task").mkdir(parents=True)
    (conf / "model").mkdir()
    (conf / "task" / "named.yaml").write_text('run_name: demo\ntasks: [copa_demo]\neval:\n  description: "${model.name} on ${task.tasks.0}: "\n')
    (conf / "model" / "shots.yaml").write_text('name: shots\npredictor: random\neval:\n  train_sep: "${nshot} ${oc.env:FEWSHOT_NO_SUCH_VAR,x}"\n')
    planner, jobs = plan(["model=random,majority,shots", "task=named,copa_demo", "nshot=0,2", f"output_dir={tmp_path / 'out'}"],
                         config_dirs=[conf])
    got = {(j.unit.model_key, j.unit.task_key, j.unit.nshot): (j.unit.params["description"], j.unit.params["train_sep"]) for j in jobs}
    assert got[("majority", "named", 2)] == ("majority on copa_demo: ", "\n\n")
    assert got[("shots", "named", 2)] == ("shots on copa_demo: ", "2 x") and got[("shots", "copa_demo", 0)] == (None, "0 x")
    for job in jobs:
        assert job_unit(planner, job) == job.unit  # the whole unit: the local launcher hands the job the planned one


@pytest.mark.parametrize("override, shown", [("train_sep=1e5", "100000.0"), ("unconditional_prompt=null", "None"), ("eval_set=2", "2")])
def test_text_that_hydra_reads_as_a_number_or_null_is_refused_with_how_to_quote_it(tmp_path: Path, override: str, shown: str) -> None:
    from fewshot_eval.config import ConfigError

    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key} must be .*, got {shown}\. .* quote text \({key}='\.\.\.'\)\.$"):
        plan(["model=random", "task=copa_demo", "nshot=0", override, f"output_dir={tmp_path}"])

"""Results survive upgrades: every result tree written by an earlier release plans as complete,
and adding a parameter with a neutral default re-keys nothing while changing a value does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fewshot_eval.config import EVAL_KEYS, NON_NUMERIC_KEYS
from fewshot_eval.plan import identity
from fewshot_eval.api import plan
from fewshot_eval.settings import ModelSetting

FIXTURES = Path(__file__).parent / "fixtures"

# The sweeps that wrote each release's tree (tests/fixtures/README.md).
SWEEPS_0_1_0 = [
    ["model=random,majority,tiny_gpt2", "task=copa_demo,pawsx_calib", "nshot=0,2", "num_trials=2", "n_eval_samples=6"],
    ["model=random,tiny_gpt2", "task=nli_demo", "nshot=2", "num_trials=2", "n_eval_samples=6", "split_trials=true"],
]


RELEASES = ["0.1.0", "0.2.0"]  # every release that wrote results; add each new format's tree here


def tree(tmp_path: Path, release: str) -> Path:
    out = tmp_path / f"results_{release}"
    shutil.copytree(FIXTURES / f"results_{release}", out)
    return out


@pytest.fixture
def tree_0_1_0(tmp_path: Path) -> Path:
    return tree(tmp_path, "0.1.0")


def statuses(out: Path, sweep: list[str], *extra: str) -> list[tuple[str, str]]:
    _, jobs = plan(sweep + [f"output_dir={out}", *extra])
    return [(j.status, str(j.unit.result_dir.relative_to(out))) for j in jobs]


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("sweep", SWEEPS_0_1_0, ids=["unsplit", "split_trials"])
def test_results_of_every_release_plan_complete(tmp_path: Path, release: str, sweep: list[str]) -> None:
    out = tree(tmp_path, release)
    rows = statuses(out, sweep)
    assert rows and all(status == "skip: complete" for status, _ in rows), rows
    assert all((out / rdir / "results.json").exists() for _, rdir in rows)


def test_a_new_parameter_with_a_neutral_default_keeps_results_complete(tree_0_1_0: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate the next release adding an eval parameter 'chat_template' (neutral: null) and a model field."""
    monkeypatch.setattr("fewshot_eval.config.EVAL_KEYS", EVAL_KEYS + ("chat_template",))
    monkeypatch.setattr("fewshot_eval.plan.checks.EVAL_KEYS", EVAL_KEYS + ("chat_template",))
    monkeypatch.setitem(identity.NEUTRAL_PARAMS, "chat_template", None)
    monkeypatch.setitem(identity.NEUTRAL_MODEL, "device_map", None)
    sweep = SWEEPS_0_1_0[0]
    neutral = statuses(tree_0_1_0, sweep, "+chat_template=null")
    assert {s for s, _ in neutral} == {"skip: complete"}
    changed = statuses(tree_0_1_0, sweep, "+chat_template=chatml")
    assert {s for s, _ in changed} == {"run"}
    assert not {d for _, d in changed} & {d for _, d in neutral}  # a new result dir, the old one untouched
    model = {"name": "m", "predictor": "random", "weights": None, "revision": None, "device_map": None}
    with_field = identity.job_identity(model, ["copa_demo"], {"scoring": "sum"}, 0)
    without = identity.job_identity({k: v for k, v in model.items() if k != "device_map"}, ["copa_demo"], {"scoring": "sum"}, 0)
    assert identity.identity_digest(with_field) == identity.identity_digest(without)
    assert identity.identity_digest(identity.job_identity({**model, "device_map": "auto"}, ["copa_demo"], {"scoring": "sum"}, 0)) != identity.identity_digest(without)


def test_a_changed_default_runs_again(tree_0_1_0: Path) -> None:
    """A value that changes numbers never reuses a result, whether set by hand or by a new default."""
    rows = statuses(tree_0_1_0, SWEEPS_0_1_0[0], "train_sep=' ### '")
    assert {s for s, _ in rows} == {"run"}


def test_every_parameter_and_model_field_declares_its_identity() -> None:
    """A parameter added without a neutral value would re-key every stored result: the identity tables must list it."""
    declared = set(identity.PARAMS_0_1_0) | set(identity.NEUTRAL_PARAMS) | set(NON_NUMERIC_KEYS)
    assert set(EVAL_KEYS) <= declared, set(EVAL_KEYS) - declared
    fields = set(ModelSetting.__dataclass_fields__)
    assert fields <= set(identity.MODEL_0_1_0) | set(identity.NEUTRAL_MODEL) | identity.MODEL_NON_IDENTITY
    with pytest.raises(identity.IdentityError, match="new_key"):
        identity.job_identity({"predictor": "random", "new_key": 1}, ["copa_demo"], {}, 0)

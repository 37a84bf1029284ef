"""Results survive upgrades: every result tree written by an earlier release plans as complete,
and adding a parameter with a neutral default re-keys nothing while changing a value does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fewshot_eval.api import plan
from fewshot_eval.config import EVAL_KEYS, NON_NUMERIC_KEYS
from fewshot_eval.plan import identity
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
    assert identity.identity_digest(identity.job_identity({**model, "device_map": "auto"}, ["copa_demo"], {"scoring": "sum"}, 0)) \
        != identity.identity_digest(without)


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


@pytest.mark.parametrize("release", RELEASES)
def test_results_of_every_release_read_through_report_with_their_stored_numbers(tmp_path: Path, release: str) -> None:
    """``fewshot-eval report`` over an old tree: every stored summary (mean, std, interval) and every
    per-trial value comes out as results.json holds it, none lost; 0.1.0's preferred metrics come from its trials."""
    import pandas as pd

    from fewshot_eval import commands

    out = tree(tmp_path, release)
    summary, long = tmp_path / "summary.csv", tmp_path / "long.csv"
    assert commands.run(["report", str(out), "--out", str(summary), "--long", str(long)]) == 0
    rows = pd.read_csv(summary, keep_default_na=False)
    trials = pd.read_csv(long, keep_default_na=False)
    want_summaries, want_trials = {}, {}
    for f in out.rglob("results.json"):
        res = json.loads(f.read_text())
        for sub, metrics in res["results"].items():
            for metric, s in metrics.items():
                if isinstance(s, dict) and "mean" in s:
                    key = (str(f.parent), sub, metric)
                    want_summaries[key] = (s["mean"], s["std"], *s["ci95"])
                    want_trials.update({(*key, int(t)): v for t, v in zip(res["trials"], s["per_trial"])})
    got_summaries = {(r.result_dir, r.result, r.metric): (r.mean, r.std, r.ci95_low, r.ci95_high) for r in rows.itertuples()}
    got_trials = {(r.result_dir, r.result, r.metric, int(r.trial)): r.value for r in trials.itertuples()}
    assert len(want_summaries) > 50 and got_summaries.keys() == want_summaries.keys()
    for k, v in want_summaries.items():
        assert got_summaries[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    assert got_trials.keys() == want_trials.keys()
    assert all(got_trials[k] == pytest.approx(v, rel=1e-12, abs=1e-12) for k, v in want_trials.items())
    preferred = {(r.result_dir, r.result): r.metric for r in rows.itertuples() if r.preferred in (True, "True")}
    for (rdir, sub), metric in preferred.items():
        trial = json.loads((Path(rdir) / "trial0" / "metrics.json").read_text())
        assert metric in (trial["info"]["preferred_metric"][sub], trial["info"]["preferred_metric"][sub] + "_raw"), (rdir, sub)


@pytest.mark.parametrize("damage", ["emptied", "deleted", "cut"])
def test_a_damaged_0_1_0_result_is_rerun_for_its_broken_trial_only(tree_0_1_0: Path, damage: str) -> None:
    """0.1.0 recorded no file sizes: the planner reads such a result's files (store/legacy.py) -- an emptied,
    deleted or cut predictions file makes its trial run again, and nothing else; a whole one gets its sizes
    recorded by the first sweep that launches (atomically; never by a dry run), so later plans check sizes only."""
    from cli_helpers import run_cli

    sweep = ["model=random", "task=copa_demo", "nshot=2", "num_trials=2", "n_eval_samples=6"]
    rdir = next(tree_0_1_0.glob("demo/random/copa_demo/2shot.*"))
    pred = rdir / "trial1" / "copa_demo.default.predictions.jsonl"
    {"emptied": lambda: pred.write_bytes(b""), "deleted": pred.unlink,
     "cut": lambda: pred.write_bytes(pred.read_bytes()[:-10])}[damage]()
    legacy = (rdir / "results.json").read_bytes()
    trial0 = (rdir / "trial0" / "metrics.json").stat().st_mtime_ns
    _, [job] = plan([*sweep, f"output_dir={tree_0_1_0}"])
    assert job.status == "run" and "incomplete: trial1/copa_demo.default.predictions.jsonl" in job.detail, job.detail
    assert (rdir / "results.json").read_bytes() == legacy  # a broken result records nothing
    other = next(tree_0_1_0.glob("demo/random/copa_demo/0shot.*"))
    assert statuses(tree_0_1_0, [*sweep[:2], "nshot=0", *sweep[3:]]) == [("skip: complete", str(other.relative_to(tree_0_1_0)))]
    assert "files" not in json.loads((other / "results.json").read_text())  # a dry run writes nothing
    # a whole 0.1.0 result: its sizes recorded by the first sweep that launches
    run_cli(["-m", *sweep[:2], "nshot=0", *sweep[3:], f"output_dir={tree_0_1_0}"], tree_0_1_0)
    assert "files" in json.loads((other / "results.json").read_text())
    out = run_cli(["-m", *sweep, f"output_dir={tree_0_1_0}"], tree_0_1_0).stdout
    assert "ran 1" in out and (rdir / "trial0" / "metrics.json").stat().st_mtime_ns == trial0
    assert len(pred.read_bytes().splitlines()) == 6 and {s for s, _ in statuses(tree_0_1_0, sweep)} == {"skip: complete"}

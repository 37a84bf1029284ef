"""lm-evaluation-harness's task catalog inside the grid (``lm_eval:<name>`` in a task setting).

The catalog task here is lm-eval's own ``arc_easy`` config (included from the installed catalog:
same prompt, choices, metrics) pointed at local fixture files in ARC's schema, so it runs offline.
Its numbers must equal ``lm_eval.simple_evaluate`` with lm-eval's own HF model on the same data.
Indexing the catalog takes ~10 s per process, so these tests are slow.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.api import plan

pytestmark = pytest.mark.slow

WORDS = ["stone", "water", "light", "plant", "metal", "cloud", "sound", "heat", "ice", "sand", "wind", "seed"]


def _arc_rows(n: int, split: str, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(n):
        k = rng.choice([3, 4])
        labels = ["A", "B", "C", "D"][:k] if rng.random() < 0.7 else ["1", "2", "3", "4"][:k]
        texts = rng.sample(WORDS, k)
        rows.append({
            "id": f"{split}-{i}",
            "question": f"Which thing is most like {rng.choice(WORDS)} in example {i}?",
            "choices": {"text": texts, "label": labels},
            "answerKey": rng.choice(labels),
        })
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def catalog_conf(tmp_path: Path) -> Path:
    """A config dir with an lm-eval task YAML (arc_easy from the catalog, on local files), a task setting
    mixing it with the packaged copa_demo, and one naming a mistyped catalog task."""
    import lm_eval

    conf = tmp_path / "conf"
    inc = conf / "lm_eval_tasks"
    rng = random.Random(7)
    for split, n in (("train", 14), ("validation", 6), ("test", 9)):
        _write_jsonl(inc / "data" / f"{split}.jsonl", _arc_rows(n, split, rng))
    arc = Path(lm_eval.__file__).parent / "tasks" / "arc" / "arc_easy.yaml"
    (inc / "arc_local.yaml").write_text(
        f"include: {arc}\n"
        "task: arc_local\n"
        "tag: null\n"
        "dataset_path: json\n"
        "dataset_name: null\n"
        "dataset_kwargs:\n"
        "  data_files: {train: data/train.jsonl, validation: data/validation.jsonl, test: data/test.jsonl}\n"
    )
    (conf / "task").mkdir()
    (conf / "task" / "mix.yaml").write_text("run_name: mix\ntasks: [lm_eval:arc_local, copa_demo]\n")
    (conf / "task" / "typo.yaml").write_text("run_name: mix\ntasks: [lm_eval:arc_esay]\n")
    (conf / "task" / "hub_arc.yaml").write_text("run_name: mix\ntasks: [lm_eval:arc_easy]\n")
    (conf / "task" / "gen.yaml").write_text("run_name: mix\ntasks: [lm_eval:gsm8k]\n")
    return conf


def _reference(conf: Path, nshot: int, fewshot_seed: int, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, list[dict]]:
    """lm-eval's own numbers and logged samples: its HF model, its evaluator, the same task YAML (relative
    data paths resolved from the YAML's dir, as fewshot-eval takes them)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    monkeypatch.chdir(conf / "lm_eval_tasks")
    tm = TaskManager(include_path=str(conf / "lm_eval_tasks"), include_defaults=False)
    res = lm_eval.simple_evaluate(model=HFLM(pretrained=str(tiny_gpt2_path()), batch_size=4, device="cpu"), tasks=["arc_local"],
                                  num_fewshot=nshot, task_manager=tm, fewshot_random_seed=fewshot_seed, bootstrap_iters=0,
                                  log_samples=True)
    return res["results"]["arc_local"], res["samples"]["arc_local"]


# |clm - HFLM| per request (float32 CPU, same kernels; HFLM batches 4, clm its own way). Measured on these
# 9 documents x 3-4 choices x 3 trials: 4.3e-6 (batch composition changes the float sums, nothing else).
LL_TOL = 1e-5


def _assert_same_requests(rows: list[dict], ref: list[dict], where: tuple) -> None:
    """Each document's requests (context, continuation) and each request's log-likelihood and greedy flag
    equal lm-eval's logged sample (not just the aggregated acc)."""
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_runner import _jsonable

    want = {str(s["doc_id"]): s for s in _jsonable(ref)}
    assert sorted(r["id"] for r in rows) == sorted(want), where
    for row in rows:
        s = want[row["id"]]
        assert row["arguments"] == s["arguments"], (where, row["id"])
        got, exp = [r[0] for r in row["resps"]], [r[0] for r in s["resps"]]
        assert len(got) == len(exp) and all(g[1] == e[1] for g, e in zip(got, exp)), (where, row["id"])
        for i, (g, e) in enumerate(zip(got, exp)):
            assert abs(float(g[0]) - float(e[0])) < LL_TOL, (where, row["id"], i, g[0], e[0])


def test_catalog_task_in_a_grid_matches_lm_eval_and_is_skipped_then_stale(catalog_conf: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    args = ["-m", "--config-dir", str(catalog_conf), "model=tiny_gpt2", "task=mix", "nshot=0,2", "num_trials=2", "seed=3", f"output_dir={out}"]
    run_cli(args, cwd=tmp_path, timeout=600)

    results = {json.loads(f.read_text())["nshot"]: json.loads(f.read_text()) for f in out.rglob("results.json")}
    assert sorted(results) == [0, 2]
    for nshot, res in results.items():
        assert res["tasks"] == ["lm_eval:arc_local", "copa_demo"]
        assert "copa_demo.default" in res["results"]  # the own task ran in the same job
        sub = res["results"]["lm_eval:arc_local"]
        assert sub["preferred_metric"] == "acc"
        trials = [0] if nshot == 0 else [0, 1]
        rdir = next(out.rglob(f"{nshot}shot.*"))
        for t in trials:  # trial t samples lm-eval's demonstrations with fewshot_random_seed = seed + t
            ref, samples = _reference(catalog_conf, nshot, 3 + t, monkeypatch)
            for metric in ("acc", "acc_norm"):
                assert abs(sub[metric]["per_trial"][t] - ref[f"{metric},none"]) < 1e-4, (nshot, t, metric)
            rows = [json.loads(x) for x in (rdir / f"trial{t}" / "lm_eval:arc_local.predictions.jsonl").read_text().splitlines()]
            _assert_same_requests(rows, samples, (nshot, t))
        ident = json.loads((rdir / "identity.json").read_text())
        assert ident["catalog"]["tasks"]["arc_local"]["version"] == 1.0 and ident["catalog"]["lm_eval"] == lm_eval_version()
        rows = [json.loads(x) for x in (rdir / "trial0" / "lm_eval:arc_local.predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 9 and all("arguments" in r and "correct" in r for r in rows)
    # lm-eval's few-shot context really has nshot demonstrations from the train split
    two = json.loads(next(out.rglob("2shot.*/trial0/lm_eval:arc_local.predictions.jsonl")).read_text().splitlines()[0])
    assert two["arguments"][0][0].count("Question:") == 3

    # a second sweep skips everything
    sweep = ["--config-dir", str(catalog_conf), "model=tiny_gpt2", "task=mix", "nshot=0,2", "num_trials=2", "seed=3", f"output_dir={out}"]
    _, jobs = plan(sweep[2:], config_dirs=[catalog_conf])
    assert [j.status for j in jobs] == ["skip: complete", "skip: complete"]

    # recalc under another scoring keeps lm-eval's numbers and writes where such a sweep looks
    from fewshot_eval import commands

    assert commands.run(["recalc", str(out), "--scoring", "mean", "--config-dir", str(catalog_conf)]) == 0
    _, mean_jobs = plan([*sweep[2:], "scoring=mean"], config_dirs=[catalog_conf])
    assert [j.status for j in mean_jobs] == ["skip: complete", "skip: complete"]
    recalced = json.loads((mean_jobs[1].unit.result_dir / "results.json").read_text())["results"]["lm_eval:arc_local"]
    assert recalced["acc"]["per_trial"] == results[2]["results"]["lm_eval:arc_local"]["acc"]["per_trial"]
    info = json.loads((mean_jobs[1].unit.result_dir / "trial0" / "metrics.json").read_text())["info"]
    assert info["scoring"] == "mean" and "lm-eval catalog tasks ['lm_eval:arc_local'] ignore scoring=mean" in " ".join(info["warnings"])

    # the catalog task's data changes: its results are stale
    data = catalog_conf / "lm_eval_tasks" / "data" / "test.jsonl"
    data.write_text(data.read_text().replace("example 0", "example zero"))
    _, jobs = plan(sweep[2:], config_dirs=[catalog_conf])
    assert [j.status for j in jobs] == ["stale", "stale"]

    # its config changes: a new identity (another result dir), the old result is left alone
    yaml_file = catalog_conf / "lm_eval_tasks" / "arc_local.yaml"
    yaml_file.write_text(yaml_file.read_text() + "doc_to_text: 'Q: {{question}}\\nA:'\n")
    _, new = plan(sweep[2:], config_dirs=[catalog_conf])
    assert [j.status for j in new] == ["run", "run"]
    assert {j.unit.result_dir for j in new}.isdisjoint({j.unit.result_dir for j in jobs})


def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def test_planning_errors_name_the_fix(catalog_conf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    common = ["model=tiny_gpt2", f"output_dir={tmp_path}", "nshot=0"]
    _, [job] = plan(["task=typo", *common], config_dirs=[catalog_conf])
    assert job.status == "error" and "lm_eval:arc_esay" in job.detail and "Close matches: lm_eval:arc_easy" in job.detail

    _, [job] = plan(["task=hub_arc", *common], config_dirs=[catalog_conf])  # the real arc_easy: its hub dataset is not cached here
    assert job.status == "error"
    assert "allenai/ai2_arc" in job.detail and "not in the local HuggingFace cache" in job.detail and "data_files" in job.detail

    _, [job] = plan(["task=gen", *common], config_dirs=[catalog_conf])  # gsm8k generates; clm only scores log-likelihoods here
    from fewshot_eval.evaluate.registry import predictor_class

    if "generate_until" not in predictor_class("clm").operations:
        assert job.status == "error" and "generate_until" in job.detail

    _, [job] = plan(["task=mix", "model=majority", f"output_dir={tmp_path}", "nshot=0"], config_dirs=[catalog_conf])
    assert job.status == "error" and "'random'" in job.detail
    _, [job] = plan(["task=mix", *common[:2], "nshot=-1"], config_dirs=[catalog_conf])
    assert job.status == "error" and "nshot=-1" in job.detail


def test_own_task_identities_have_no_catalog_key(tmp_path: Path) -> None:
    _, [job] = plan(["model=tiny_gpt2", "task=copa_demo", f"output_dir={tmp_path}"])
    assert "catalog" not in job.unit.identity


def test_list_catalog_searches_tasks_groups_and_your_dir(catalog_conf: Path, capsys: pytest.CaptureFixture) -> None:
    from fewshot_eval import commands

    assert commands.run(["list", "catalog", "arc_", "--config-dir", str(catalog_conf)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip() and not line.startswith(" ")}
    assert "arc_easy" in lines and "arc_challenge" in lines and "task" in lines["arc_easy"]
    assert "arc_local" in lines and str(catalog_conf) in lines["arc_local"]
    assert commands.run(["list", "catalog", "mmlu", "--config-dir", str(catalog_conf)]) == 0
    assert any(line.split()[:2] == ["mmlu", "group"] for line in capsys.readouterr().out.splitlines())


def _fresh_catalog(search: list[Path]):
    """The catalog as a new process reads it (this process's memos dropped)."""
    from fewshot_eval.evaluate.lm_eval_bridge import catalog_index

    catalog_index._table.cache_clear()
    catalog_index._catalog.cache_clear()
    catalog_index.look_again()
    return catalog_index.catalog(search)


def test_the_catalog_index_is_kept_on_disk_until_a_yaml_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Per directory, a small name -> YAML table built once by lm-eval's TaskIndex is stored and read back
    by later processes; an edited YAML rebuilds its directory's table only; a damaged file is rebuilt."""
    from fewshot_eval.evaluate.lm_eval_bridge.catalog_index import lm_eval_dir

    monkeypatch.setenv("FEWSHOT_EVAL_CACHE", str(tmp_path / "cache"))
    conf = tmp_path / "conf"
    (conf / "lm_eval_tasks").mkdir(parents=True)
    yaml = conf / "lm_eval_tasks" / "mine.yaml"
    yaml.write_text("task: mine_a\ndataset_path: json\noutput_type: multiple_choice\ntag: [my_tag]\n")
    cat = _fresh_catalog([conf])
    assert cat.entry("mine_a").kind == "TASK" and cat.source("mine_a") == yaml.resolve() and cat.yours("mine_a")
    assert cat.entry("my_tag").tags == ("mine_a",) and cat.entry("arc_easy").kind == "TASK" and not cat.yours("arc_easy")
    assert cat.source("arc_easy") == lm_eval_dir() / "tasks" / "arc" / "arc_easy.yaml"
    stored = {f: json.loads(f.read_text()) for f in (tmp_path / "cache" / "lm_eval_index").glob("*.json")}
    assert sorted(len(s["entries"]) > 10000 for s in stored.values()) == [False, True]  # lm-eval's own tasks, your dir
    mine = next(f for f, s in stored.items() if "mine_a" in s["entries"])
    assert stored[mine]["entries"]["mine_a"] == ["TASK", "mine.yaml", ["my_tag"]]

    # mark the stored tables: a catalog that shows the marks read them instead of indexing
    for f, s in stored.items():
        s["entries"]["marked_" + str(len(s["entries"]) > 10000)] = ["TASK", "mine.yaml", []]
        f.write_text(json.dumps(s))
    cat = _fresh_catalog([conf])
    assert "marked_True" in cat.index and "marked_False" in cat.index

    yaml.write_text("task: mine_bee\ndataset_path: json\noutput_type: multiple_choice\n")  # your dir changes
    cat = _fresh_catalog([conf])
    assert "mine_bee" in cat.index and "mine_a" not in cat.index and "my_tag" not in cat.index
    assert "marked_False" not in cat.index and "marked_True" in cat.index  # lm-eval's own table is not re-read
    assert len(list((tmp_path / "cache" / "lm_eval_index").glob("*.json"))) == 3

    # your dir's table (found by content: files written in one clock tick share their mtime)
    newest = next(f for f in (tmp_path / "cache" / "lm_eval_index").glob("*.json") if "mine_bee" in json.loads(f.read_text())["entries"])
    newest.write_bytes(b"not json")
    with caplog.at_level("WARNING", logger="fewshot_eval"):
        assert "mine_bee" in _fresh_catalog([conf]).index
    assert "unreadable" in caplog.text
    assert json.loads(newest.read_bytes())["entries"]["mine_bee"]  # rebuilt in place
    _fresh_catalog([conf])


def test_planning_a_catalog_task_imports_none_of_lm_evals_task_code(catalog_conf: Path, tmp_path: Path) -> None:
    """The planner reads the small index and the planned names' YAMLs only: lm-eval's task package (which
    imports datasets, pandas: ~1 s) is not imported, so a catalog sweep plans as fast as an own-format one
    (once the include dir is indexed: a new or edited YAML is indexed by lm-eval's TaskIndex, which imports it)."""
    _fresh_catalog([catalog_conf])
    script = (
        "import sys, json\n"
        "from fewshot_eval.api import plan\n"
        f"_, jobs = plan(['model=tiny_gpt2', 'task=mix', 'nshot=0,2', 'output_dir={tmp_path / 'out'}'], config_dirs=[{str(catalog_conf)!r}])\n"
        "heavy = sorted(m for m in ('lm_eval.tasks', 'lm_eval.api.task', 'datasets', 'pandas', 'torch') if m in sys.modules)\n"
        "print(json.dumps([[j.status for j in jobs], heavy, jobs[0].unit.identity['catalog']]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    statuses, heavy, ident = json.loads(out.splitlines()[-1])
    assert statuses == ["run", "run"] and heavy == []
    assert ident["tasks"]["arc_local"]["version"] == 1.0


def test_a_jobs_task_manager_builds_what_lm_evals_own_builds(catalog_conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's TaskManager (lm-eval's, over the small index) builds the same tasks, groups and tags as
    lm-eval's TaskManager after its own indexing: same configs, same group structure."""
    from lm_eval.tasks import TaskManager

    from fewshot_eval.evaluate.lm_eval_bridge.catalog_manager import task_manager

    inc = catalog_conf / "lm_eval_tasks"
    data = {s: str(inc / "data" / f"{s}.jsonl") for s in ("train", "validation", "test")}  # absolute: any cwd
    (inc / "arc_local.yaml").write_text((inc / "arc_local.yaml").read_text().split("dataset_kwargs")[0]
                                        + f"dataset_kwargs:\n  data_files: {json.dumps(data)}\ntag: [local_arcs]\n")
    (inc / "arc_again.yaml").write_text("include: arc_local.yaml\ntask: arc_again\nnum_fewshot: 3\n")
    (inc / "arcs.yaml").write_text("group: local_arc_group\ntask:\n  - arc_local\n  - task: arc_again\n    num_fewshot: 1\n"
                                   "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\nmetadata: {version: 2}\n")
    ours = task_manager(_fresh_catalog([catalog_conf]))
    theirs = TaskManager(include_path=str(inc), include_defaults=False)

    def shape(tm: TaskManager, names: list[str]) -> dict:
        loaded = tm.load(names)
        tasks = {n: {k: v for k, v in t.config.to_dict().items() if k != "metadata"} for n, t in loaded["tasks"].items()}
        return {"tasks": tasks, "group_map": loaded.get("group_map"), "metadata": {n: t.config.metadata for n, t in loaded["tasks"].items()}}

    for names in (["arc_local"], ["local_arc_group"], ["local_arcs"]):
        assert shape(ours, names) == shape(theirs, names), names
    assert "arc_easy" in ours.all_tasks and "mmlu" in ours.all_groups and "ai2_arc" in ours.all_tags

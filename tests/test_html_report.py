"""Plots, the self-contained HTML report (rendered in a real headless chromium) and the MLflow export.

The browser test finds chromium (``$FEWSHOT_CHROMIUM`` or on PATH); when it is missing it asks
``.ci/browser.sh install`` (apt-get, root only), like the SLURM tests start their cluster. It is
skipped when no browser can be had, and fails instead with ``FEWSHOT_REQUIRE_BROWSER=1`` (CI).
The screenshot is kept under pytest's tmp dir (its path is printed) and copied to
``$FEWSHOT_TEST_ARTIFACTS`` when that is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cli_helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
BROWSER_SH = REPO / ".ci" / "browser.sh"
PLOT_STEMS = {"nshot__copa_demo__copa_demo.default", "nshot__nli_demo__nli_demo.default", "bars__copa_demo__2shot", "bars__nli_demo__2shot"}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The baseline sweep of the issue (2 models x 2 task settings x nshot 0,2), launched once; its launch dir."""
    d = tmp_path_factory.mktemp("sweep")
    run_cli(["-m", "model=random,majority", "task=copa_demo,nli_demo", "nshot=0,2"], d)
    return d


@pytest.fixture(scope="module")
def chromium() -> str:
    def have() -> str | None:
        p = subprocess.run(["bash", str(BROWSER_SH), "path"], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None

    found = have()
    why = "no chromium found"
    if not found:
        inst = subprocess.run(["bash", str(BROWSER_SH), "install"], capture_output=True, text=True, timeout=900)
        found = have()
        why = f"no chromium, and .ci/browser.sh install failed: {inst.stderr.strip()[-500:]}"
    if not found:
        if _truthy("FEWSHOT_REQUIRE_BROWSER"):
            pytest.fail(f"{why} (FEWSHOT_REQUIRE_BROWSER=1)")
        pytest.skip(why)
    return found


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--no-first-run", "--disable-extensions", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_plots_are_written_as_png_and_svg_with_fixed_names(sweep: Path) -> None:
    run_cli(["report", "results", "--plots", "plots"], sweep)
    names = sorted(p.name for p in (sweep / "plots").iterdir())
    assert names == sorted(f"{s}.{fmt}" for s in PLOT_STEMS for fmt in ("png", "svg")), names  # no step__: no checkpoint models
    for stem in PLOT_STEMS:
        assert (sweep / "plots" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        ET.fromstring((sweep / "plots" / f"{stem}.svg").read_bytes())  # well-formed SVG
    first = {p.name: p.read_bytes() for p in (sweep / "plots").glob("*.svg")}
    run_cli(["report", "results", "--plots", "plots", "--spread", "ci", "--bar-nshot", "0"], sweep)
    ci = {p.name: p.read_bytes() for p in (sweep / "plots").glob("*.svg")}
    assert ci["nshot__nli_demo__nli_demo.default.svg"] != first["nshot__nli_demo__nli_demo.default.svg"]  # another band
    assert {"bars__copa_demo__0shot.svg", "bars__nli_demo__0shot.svg"} <= set(ci)
    shutil.rmtree(sweep / "plots")
    run_cli(["report", "results", "--plots", "plots"], sweep)
    assert {p.name: p.read_bytes() for p in (sweep / "plots").glob("*.svg")} == first  # the same data, the same files


def test_checkpoint_sweeps_get_a_plot_vs_step(sweep: Path, tmp_path: Path) -> None:
    """Model settings named <model>__step<N>: a line per base model and nshot, x = N."""
    from fewshot_eval.report import plots
    from fewshot_eval.report.collect import find_results

    for f in find_results([sweep / "results"]):
        res = json.loads(f.read_text())
        if res["model"] != "random":
            continue
        for step, bump in ((1000, 0.0), (2000, 5.0)):
            r = dict(res, model=f"ckpt__step{step}")
            for sub in r["results"].values():
                for m in sub.values():
                    if isinstance(m, dict):
                        m["mean"] += bump
            out = tmp_path / "ckpt" / r["model"] / f.parent.parent.name / f.parent.name / "results.json"
            out.parent.mkdir(parents=True)
            out.write_text(json.dumps(r))
    df, skipped = plots.load(find_results([tmp_path / "ckpt"]))
    assert not skipped
    assert set(plots.preferred(df)["variant"]) == {""}
    figs = plots.figures(df)
    try:
        step = {p.stem: p for p in figs if p.kind == "step"}
        assert set(step) == {"step__copa_demo__copa_demo.default", "step__nli_demo__nli_demo.default"}
        ax = step["step__nli_demo__nli_demo.default"].fig.axes[0]
        assert sorted(line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")) == ["ckpt 0-shot", "ckpt 2-shot"]
        assert [float(t) for t in ax.get_xticks()] == [1000.0, 2000.0]
        written = plots.write_plots(figs, tmp_path / "plots")
        assert tmp_path / "plots" / "step__nli_demo__nli_demo.default.svg" in written
    finally:
        plots.close(figs)


def test_results_that_differ_in_a_setting_are_never_merged(sweep: Path, tmp_path: Path) -> None:
    """The same model, task and nshot with scoring=sum and scoring=mean: two rows, two lines."""
    from fewshot_eval.report import html, plots
    from fewshot_eval.report.collect import find_results

    for f in find_results([sweep / "results"]):
        res = json.loads(f.read_text())
        if res["model"] != "random" or res["task_setting"] != "copa_demo":
            continue
        for scoring, bump in (("sum", 0.0), ("mean", 10.0)):
            r = dict(res, params=dict(res["params"], scoring=scoring))
            for m in r["results"]["copa_demo.default"].values():
                if isinstance(m, dict):
                    m["mean"] += bump
            out = tmp_path / "v" / scoring / f.parent.name / "results.json"
            out.parent.mkdir(parents=True)
            out.write_text(json.dumps(r))
    df, _ = plots.load(find_results([tmp_path / "v"]))
    d = plots.preferred(df)
    assert sorted(set(d["series"])) == ["random scoring=mean", "random scoring=sum"]
    table = html.pivot_rows(d)
    assert [r["labels"] for r in table["rows"]] == [["random", "scoring=mean"], ["random", "scoring=sum"]]
    means = [[c["value"] for c in r["cells"]] for r in table["rows"]]
    assert means[0] == [pytest.approx(v + 10.0) for v in means[1]]
    figs = plots.figures(df)
    try:
        ax = next(p for p in figs if p.kind == "nshot").fig.axes[0]
        assert sorted(line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")) == ["random scoring=mean", "random scoring=sum"]
    finally:
        plots.close(figs)


def test_html_report_renders_in_headless_chromium(chromium: str, sweep: Path, tmp_path: Path) -> None:
    corrupt = sweep / "results" / "demo" / "broken" / "copa_demo" / "0shot.deadbeef" / "results.json"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_text('{"results": {"copa_demo.default": ')  # a partial write
    try:
        out = run_cli(["report", "results", "--html", "report.html"], sweep)
    finally:
        shutil.rmtree(corrupt.parents[2])
    assert re.search(rf"skipped {re.escape(str(Path('results') / corrupt.relative_to(sweep / 'results')))}: .*JSON", out.stdout), out.stdout
    html = (sweep / "report.html").read_text()
    # self-contained: every image inline, nothing loaded from elsewhere
    assert not re.search(r"<link|@import|url\(|<script[^>]+src=", html)
    srcs = re.findall(r'\s(?:src|href)="([^"]*)"', html)
    assert len(srcs) == len(PLOT_STEMS) and all(s.startswith("data:image/png;base64,") for s in srcs), srcs[:3]

    page = (sweep / "report.html").resolve().as_uri()
    dom = _chromium(chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", page)
    assert dom.returncode == 0 and "<table" in dom.stdout, dom.stderr[-2000:]
    assert re.search(r'<body data-images="4/4"', dom.stdout), re.findall(r"<body[^>]*>", dom.stdout)  # every image decoded
    assert set(re.findall(r'data-plot="([^"]+)"', dom.stdout)) == PLOT_STEMS
    pivot = dom.stdout.split('id="pivot-table"')[1].split("</table>")[0]
    assert "nli_demo.default (macro_f1)" in pivot and "copa_demo.default (accuracy)" in pivot
    assert re.search(r'<td class="key">majority</td>', pivot) and re.search(r'<td class="key">random</td>', pivot)
    assert re.search(r"\d+\.\d\d ± \d+\.\d\d \(n=3\)<", pivot)  # 2-shot: 3 trials, with their spread
    assert re.search(r">\d+\.\d\d \(n=1\)<", pivot) and "± 0.00 (n=1)" not in pivot  # 0-shot: one trial, no ±
    assert len(re.findall(r"<tr>", dom.stdout.split('id="results-table"')[1].split("</table>")[0])) == 1 + 8
    assert "0shot.deadbeef" in dom.stdout.split('id="skipped"')[1]

    # the sortable tables: column 5 of the results table is the mean; '#sort=' clicks its header twice (descending)
    table = dom.stdout.split('id="results-table"')[1].split("</table>")[0]
    col = re.findall(r"<th[^>]*>([^<]*)</th>", table).index("mean")
    sorted_dom = _chromium(chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", page + f"#sort=results-table:{col}:desc")

    def means(t: str) -> list[float]:
        return [float(re.findall(r'data-value="([^"]*)"', row)[col]) for row in t.split("<tr>")[2:]]

    got = means(sorted_dom.stdout.split('id="results-table"')[1].split("</table>")[0])
    assert len(got) == 8 and got == sorted(got, reverse=True) and got != means(table)

    shot = tmp_path / "report.png"
    r = _chromium(chromium, tmp_path / "profile", "--window-size=1280,2000", f"--screenshot={shot}", page)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(data[16:20], "big") == 1280 and len(data) > 20_000
    if os.environ.get("FEWSHOT_TEST_ARTIFACTS"):
        dest = Path(os.environ["FEWSHOT_TEST_ARTIFACTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, dest / "html_report.png")
        shutil.copy2(sweep / "report.html", dest / "html_report.html")
    print(f"screenshot of the HTML report: {shot}")


def test_without_a_browser_the_test_skips_or_fails_under_require(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FEWSHOT_REQUIRE_BROWSER"}
    env["FEWSHOT_CHROMIUM"] = str(tmp_path / "no-such-browser")
    args = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "bt"),
            f"{Path(__file__).resolve()}::test_html_report_renders_in_headless_chromium"]
    skipped = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout and "is not an executable" in skipped.stdout, skipped.stdout[-2000:]
    failed = subprocess.run(args, env={**env, "FEWSHOT_REQUIRE_BROWSER": "1"}, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and "(FEWSHOT_REQUIRE_BROWSER=1)" in failed.stdout, failed.stdout[-2000:]


def test_mlflow_export_to_a_local_file_store(sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    out = run_cli(["report", "results", "--mlflow", uri], sweep)
    assert "Logged 8 MLflow runs" in out.stdout, out.stdout
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses a file store without it (the export sets it itself)
    client = MlflowClient(tracking_uri=uri)
    [exp] = [e for e in client.search_experiments() if e.name == "fewshot-eval"]
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert len(runs) == 8
    run = runs["random/nli_demo/2shot"]
    res = json.loads((Path(run.data.params["result_dir"]) / "results.json").read_text())
    assert run.data.params["model"] == "random" and run.data.params["nshot"] == "2"
    assert run.data.metrics["nli_demo.default.macro_f1"] == pytest.approx(res["results"]["nli_demo.default"]["macro_f1"]["mean"])
    assert run.data.metrics["nli_demo.default.preferred"] == run.data.metrics["nli_demo.default.macro_f1"]
    again = run_cli(["report", "results", "--mlflow", uri], sweep)
    assert "Logged 0 MLflow runs" in again.stdout and "(8 results were logged before)" in again.stdout, again.stdout
    assert len(client.search_runs([exp.experiment_id])) == 8
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "result")}
    assert "result/results.json" in arts and "result/identity.json" in arts

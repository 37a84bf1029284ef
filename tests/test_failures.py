"""A job that fails is recorded in its result dir, retried a bounded number of times, then shown 'failed'."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import broken_model_conf, run_cli


def plan_row(out: str, model: str) -> str:
    [row] = [ln for ln in out.splitlines() if f" {model} " in ln]
    return row


def test_failures_are_recorded_retried_then_not_relaunched(workdir: Path, tmp_path: Path) -> None:
    conf = broken_model_conf(tmp_path)
    args = ["-m", "--config-dir", str(conf), "model=broken", "task=copa_demo", "nshot=0"]  # max_failures: 3 (default)
    first = run_cli(args, workdir, check=False)
    assert first.returncode == 1 and "failed 1" in first.stdout
    [record] = (workdir / "results").rglob("failure.json")
    attempts = json.loads(record.read_text())["attempts"]
    assert len(attempts) == 1 and attempts[0]["error"].startswith(("ValueError", "OSError", "JSONDecodeError", "EnvironmentError"))
    assert Path(attempts[0]["traceback"]).is_file() and "Traceback" in Path(attempts[0]["traceback"]).read_text()

    dry = run_cli(args + ["dry_run=true"], workdir).stdout
    row = plan_row(dry, "broken")
    assert row.startswith("run ") and "retry: failed 1× (" + attempts[0]["error"][:20] in row

    assert run_cli(args, workdir, check=False).returncode == 1  # the second failure
    assert "retry: failed 2×" in plan_row(run_cli(args + ["dry_run=true"], workdir).stdout, "broken")
    assert run_cli(args, workdir, check=False).returncode == 1  # the third
    dry = run_cli(args + ["dry_run=true"], workdir).stdout
    assert plan_row(dry, "broken").startswith("failed ") and "failed 3×" in dry and "retry_failed=true" in dry
    fourth = run_cli(args, workdir, check=False)
    assert "Nothing to launch" in fourth.stdout and fourth.returncode == 1
    assert len(json.loads(record.read_text())["attempts"]) == 3  # not relaunched

    # retry_failed=true, or a changed config (batch size), relaunches it
    assert plan_row(run_cli(args + ["retry_failed=true", "dry_run=true"], workdir).stdout, "broken").startswith("run ")
    assert plan_row(run_cli(args + ["batch_size=2", "dry_run=true"], workdir).stdout, "broken").startswith("run ")


def test_a_completed_result_forgets_its_failures(workdir: Path) -> None:
    args = ["-m", "model=random", "task=copa_demo", "nshot=0"]
    run_cli(args, workdir)
    [res] = (workdir / "results").rglob("results.json")
    rdir = res.parent
    res.unlink()  # pretend the first attempt failed after its trials
    (rdir / "failure.json").write_text(json.dumps({"attempts": [{"error": "RuntimeError: x", "config": "other"}]}))
    out = run_cli(args, workdir).stdout
    assert "ran 1" in out and not (rdir / "failure.json").exists() and (rdir / "results.json").exists()

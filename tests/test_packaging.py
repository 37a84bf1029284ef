"""A plain (non-editable) install works from any directory: conf/ ships inside the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_conf_and_runs_from_another_directory(tmp_path: Path) -> None:
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(REPO)], check=True)
    [wheel] = wheel_dir.glob("fewshot_eval-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fewshot_eval/conf/config.yaml" in names and "fewshot_eval/conf/model/random.yaml" in names
    assert any(n.startswith("hydra_plugins/fewshot_eval_plugins/") for n in names)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import fewshot_eval.config as c; print(c.conf_dir())"
    where = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, check=True).stdout
    assert where.strip() == str(target / "fewshot_eval" / "conf")
    proc = subprocess.run([sys.executable, "-m", "fewshot_eval", "-m", "models=baselines", "task=copa_demo", "nshot=0,2"],
                          cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ran 4, skipped 0, failed 0" in proc.stdout
    assert len(list((work / "results").rglob("results.json"))) == 4
    script = target / "bin" / "fewshot-eval"
    assert script.exists()
    again = subprocess.run([sys.executable, str(script), "-m", "models=baselines", "task=copa_demo", "nshot=0,2"],
                           cwd=work, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "Nothing to launch" in again.stdout, again.stderr[-2000:]

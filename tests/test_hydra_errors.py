"""The one private Hydra function the app replaces (fewshot_eval/hydra_errors.py): it must still exist,
with the signature and the call site the hook relies on, and the hook must do what it promises."""

from __future__ import annotations

import inspect

import hydra
import hydra._internal.utils as hydra_utils
import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.hydra_errors import compact_user_errors


def test_hydra_still_has_the_private_function_the_hook_replaces() -> None:
    """If this fails after a Hydra upgrade, fewshot_eval/hydra_errors.py needs another way in."""
    params = list(inspect.signature(hydra_utils.run_and_report).parameters)
    assert params == ["func"], f"hydra._internal.utils.run_and_report{inspect.signature(hydra_utils.run_and_report)}"
    # hydra.main -> _run_hydra -> _run_app calls it by its module-level name, so replacing that name takes effect
    assert "run_and_report(" in inspect.getsource(hydra_utils._run_app)
    assert "_run_hydra(" in inspect.getsource(hydra.main)


def test_a_user_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with compact_user_errors(), pytest.raises(SystemExit) as e:
        hydra_utils.run_and_report(lambda: (_ for _ in ()).throw(ConfigError("model 'x': no weights")))
    assert e.value.code == 2
    assert capsys.readouterr().err == "fewshot-eval: error: model 'x': no weights\n"


def test_anything_else_gets_hydras_own_report(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with compact_user_errors(), pytest.raises(SystemExit) as e:
        hydra_utils.run_and_report(lambda: 1 / 0)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "fewshot-eval: error" not in err
    original = hydra_utils.run_and_report
    assert original.__module__ == "hydra._internal.utils"  # restored on leaving


def test_hydra_full_error_shows_hydras_full_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with compact_user_errors(), pytest.raises(ConfigError):
        hydra_utils.run_and_report(lambda: (_ for _ in ()).throw(ConfigError("x")))

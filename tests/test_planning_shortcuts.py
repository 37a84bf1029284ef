"""The shortcuts that keep a 100,000-job plan fast give what the plain code gives: the estimates' walk
over the result tree (pathlib's glob), the metrics reader (open().read() + json), shared params dicts
(identity digests byte for byte), the schema checks' memo (a bad value is still refused), result paths.
In-process and on tiny trees: no plan is run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fewshot_eval.config import ConfigError
from fewshot_eval.param_schema import check_value
from fewshot_eval.plan.estimates import _result_files
from fewshot_eval.plan.identity import IdentityTemplate, identity_digest, job_identity
from fewshot_eval.plan.unit import _plain_key
from fewshot_eval.store import layout
from fewshot_eval.store.dir_listing import DirListing
from fewshot_eval.store.status import load_checked


def _pathlib_result_files(root: Path, pattern: str) -> dict[tuple[str, int], list[Path]]:
    """The estimates' walk as it was: pathlib's glob."""
    out: dict[tuple[str, int], list[Path]] = {}
    for f in sorted(root.glob(f"*/{pattern}/*/*/{layout.RESULTS}")):
        try:
            out.setdefault((f.parent.parent.name, int(f.parent.name.split("shot.")[0])), []).append(f)
        except ValueError:
            continue
    return out


def test_the_estimates_walk_finds_what_pathlibs_glob_finds(tmp_path: Path) -> None:
    root = tmp_path / "out"
    for run, model, task, name in [("r", "m", "t", "2shot.aaaaaaaa"), ("r", "m", "t", "0shot.bbbbbbbb"), ("r", "m", "t-x", "2shot.cccccccc"),
                                   ("r-2", "m", "t", "2shot.dddddddd"), (".hidden", "m", "t", "1shot.eeeeeeee"), ("r", "m", ".t", "1shot.ffffffff"),
                                   ("r", "m__step10", "t", "4shot.11111111"), ("r", "m__step2", "t", "4shot.22222222"), ("r", "other", "t", "2shot.33333333"),
                                   ("r", "m", "t", "xshot.44444444")]:
        d = root / run / model / task / name
        d.mkdir(parents=True)
        (d / layout.RESULTS).write_text("{}")
    (root / "r" / "m" / "t" / "8shot.55555555").mkdir()  # no results.json
    (root / "r" / "m" / "a-file").write_text("")  # a file among the task dirs
    (root / "r" / "m" / "t" / "3shot.66666666").write_text("")  # a file where a result dir would be
    listing = DirListing()
    listing.names(root / "r" / "m" / "t" / "2shot.aaaaaaaa")  # some dirs listed before, as a plan lists them
    for pattern in ("m", "m__step*", "nothing"):
        want = _pathlib_result_files(root, pattern)
        assert _result_files(root, pattern) == want
        assert _result_files(root, pattern, listing) == want
    found = _result_files(root, "m", listing)
    assert [f.parts[-5] for f in found[("t", 2)]] == ["r", "r-2"]  # in pathlib's order (part by part, not as strings)
    assert [f.parts[-5] for f in found[("t", 1)]] == [".hidden"] and ((".t", 1) in found)  # hidden dirs too, as pathlib


def test_metrics_reader_reads_what_open_and_json_read(tmp_path: Path) -> None:
    assert load_checked(tmp_path / "missing.json") == (None, "")
    assert load_checked(tmp_path) == (None, f"{tmp_path.name} is a directory")
    (tmp_path / "f").write_text("{}")
    assert load_checked(tmp_path / "f" / "metrics.json") == (None, "f is a file, not a directory")
    (tmp_path / "bad.json").write_text('{"a": ')
    assert load_checked(str(tmp_path / "bad.json")) == (None, "bad.json is not valid JSON")
    (tmp_path / "empty.json").write_bytes(b"")
    assert load_checked(tmp_path / "empty.json") == (None, "empty.json is not valid JSON")
    for name, data in (("utf16.json", '{"a": 1}'.encode("utf-16")), ("bom.json", b"\xef\xbb\xbf" + b'{"a": 1}'),
                       ("utf16le.json", '{"a": 1}'.encode("utf-16-le")), ("big.json", json.dumps({"x": "y" * 300_000}).encode())):
        (tmp_path / name).write_bytes(data)
        assert load_checked(tmp_path / name) == (json.loads(data), ""), name


def test_params_are_shared_only_when_their_json_is_the_same() -> None:
    base = {"scoring": "sum", "seed": 0, "balanced": False, "temperature": 1.0, "languages": None}
    assert _plain_key(base) == _plain_key(dict(base))
    for other in ({**base, "seed": 0.0}, {**base, "balanced": 0}, {**base, "temperature": 1}, {**base, "seed": False}):
        assert _plain_key(other) != _plain_key(base), other
    assert _plain_key({**base, "temperature": -0.0}) != _plain_key({**base, "temperature": 0.0})
    assert _plain_key({**base, "languages": ["en"]}) is None  # lists and mappings: never shared


def test_identity_template_with_a_plan_memo_gives_the_same_digests() -> None:
    model = {"predictor": "clm", "weights": "w", "revision": None, "resources": {"gpus_per_node": 1}}
    params = {"predictor": "clm", "scoring": "mean", "seed": 3, "dtype": None, "templates": {"copa": "x"}, "batch_size": 8}
    memo: dict = {}
    for n in (0, 2, 16, -1):
        want = identity_digest(job_identity(model, ["copa"], params, n))
        assert IdentityTemplate(model, ["copa"], params, memo=memo).digest(n) == want
        assert IdentityTemplate(model, ["copa"], dict(params, seed=4), memo=memo).digest(n) == identity_digest(
            job_identity(model, ["copa"], dict(params, seed=4), n))  # another params dict: not the memo's


def test_a_checked_value_does_not_let_a_bad_one_through() -> None:
    check_value("scoring", "sum", is_eval=True)
    check_value("scoring", "sum", is_eval=True)  # from the memo
    with pytest.raises(ConfigError, match="scoring must be"):
        check_value("scoring", "summ", is_eval=True)
    check_value("num_trials", 2, is_eval=True)
    with pytest.raises(ConfigError, match="num_trials"):
        check_value("num_trials", True, is_eval=True)  # True == 1 and hashes alike: the memo keys on the type too


def test_result_paths_equal_pathlibs() -> None:
    for parent in (Path("/o/r/m/t"), Path("rel/t"), Path(".")):
        for name in ("2shot.abcdef12", "-1shot.00000000"):
            p = layout.child(parent, name)
            assert p == parent / name and str(p) == str(parent / name) and hash(p) == hash(parent / name) and p.parts == (parent / name).parts
    assert str(layout.child(Path("/o"), "a/b")) == os.path.join("/o", "a", "b")  # not a plain name: joined as pathlib does

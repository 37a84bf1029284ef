"""store.atomic and store.status in-process: permissions, durability, short writes, temp-file cleaning,
and the file checks behind ``complete``."""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from pathlib import Path
from typing import Iterator

import pytest

from fewshot_eval.evaluate.trial_result import TrialResult
from fewshot_eval.store import atomic
from fewshot_eval.store.atomic import append_jsonl, clean_temp_files, write_json, write_text
from fewshot_eval.store.results import write_results, write_trial
from fewshot_eval.store.status import COMPLETE, MISSING, PARTIAL, result_status, trial_done, verify_files


@pytest.fixture
def umask() -> Iterator:
    """Set the process umask for a test (and forget the module's cached reading of it)."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)
        atomic.process_umask.cache_clear()

    yield set_mask
    os.umask(old)
    atomic.process_umask.cache_clear()


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_files_and_dirs_follow_the_umask(tmp_path: Path, umask, mask: int) -> None:
    umask(mask)
    assert atomic.process_umask() == mask
    write_json(tmp_path / "a" / "b" / "x.json", {"k": 1})
    write_text(tmp_path / "a" / "y.txt", "hi")
    append_jsonl(tmp_path / "c" / "log.jsonl", {"k": 1})
    for f in ("a/b/x.json", "a/y.txt", "c/log.jsonl"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o666 & ~mask, f
    for d in ("a", "a/b", "c"):
        assert stat.S_IMODE((tmp_path / d).stat().st_mode) == 0o777 & ~mask, d


def test_umask_is_read_without_changing_it(umask) -> None:
    umask(0o027)
    assert atomic.process_umask() == 0o027
    assert os.umask(0o027) == 0o027


def _fsynced_kinds(monkeypatch) -> list[str]:
    kinds: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return kinds


def test_write_fsyncs_the_file_and_then_its_directory(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "d").mkdir()
    kinds = _fsynced_kinds(monkeypatch)
    write_text(tmp_path / "d" / "x.txt", "data")
    assert kinds == ["file", "dir"]


def test_a_batch_of_writes_is_fsynced_once_at_its_end_files_first(tmp_path: Path, monkeypatch) -> None:
    """A job's writes (batched_fsync): each is atomic and whole on disk when written (a kill -9 loses nothing:
    the page cache keeps it), and the fsyncs come together -- each file once, then each directory once."""
    kinds = _fsynced_kinds(monkeypatch)
    with atomic.batched_fsync():
        write_text(tmp_path / "r" / "trial0" / "a.txt", "a")
        write_text(tmp_path / "r" / "trial0" / "a.txt", "a2")  # rewritten: still one fsync
        write_text(tmp_path / "r" / "b.txt", "b")
        assert kinds == [] and (tmp_path / "r" / "trial0" / "a.txt").read_text() == "a2"
        atomic.fsync_pending()  # a finished trial: on disk now, the batch goes on
        assert kinds == ["file", "file", "dir", "dir", "dir"], kinds  # 2 files; then tmp_path, r (new dirs' parents), r/trial0
        write_text(tmp_path / "r" / "c.txt", "c")
    assert kinds[5:] == ["file", "dir"]
    write_text(tmp_path / "d.txt", "d")  # outside a batch: as before
    assert kinds[7:] == ["file", "dir"]


def test_jobs_in_a_group_commit_share_their_fsyncs(tmp_path: Path, monkeypatch) -> None:
    """The local launcher's sweep (group_commit): each job's batch and its per-trial flushes wait for the
    group's interval; leaving the group makes everything durable, each file and directory once."""
    kinds = _fsynced_kinds(monkeypatch)
    with atomic.group_commit(every_s=3600):
        for job in range(3):
            with atomic.batched_fsync():
                write_text(tmp_path / f"r{job}" / "trial0" / "m.json", "{}")
                atomic.fsync_pending()  # a finished trial: deferred to the group
                write_text(tmp_path / f"r{job}" / "results.json", "{}")
            assert kinds == []  # a job's end: still deferred
            assert (tmp_path / f"r{job}" / "results.json").read_text() == "{}"  # readers see it at once
    assert kinds.count("file") == 6 and kinds.index("dir") == 6, kinds  # files first, then directories
    assert kinds.count("dir") == 7, kinds  # tmp_path, r0..r2, r0..r2/trial0: each once
    kinds.clear()
    with atomic.group_commit(every_s=0):  # 0: each job flushes at its end, as without a group
        with atomic.batched_fsync():
            write_text(tmp_path / "s" / "a.txt", "a")
        assert kinds == ["file", "dir", "dir"], kinds


def test_a_filesystem_that_refuses_directory_fsync_is_tolerated(tmp_path: Path, monkeypatch) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_text(tmp_path / "x.txt", "data")
    assert (tmp_path / "x.txt").read_text() == "data"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "x.json"
    write_json(target, {"v": 1})

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_append_completes_a_short_write(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "log.jsonl"
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:7])))  # the kernel writes 7 bytes at a time
    append_jsonl(log, {"model": "random", "task": "copa_demo"})
    append_jsonl(log, {"n": 2})
    monkeypatch.undo()
    assert [json.loads(line) for line in log.read_text().splitlines()] == [{"model": "random", "task": "copa_demo"}, {"n": 2}]


def test_append_that_makes_no_progress_raises(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    with pytest.raises(OSError, match="no progress"):
        append_jsonl(tmp_path / "log.jsonl", {"k": "v"})


def _age(p: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(p, (t, t))


def test_clean_temp_files_removes_only_old_temp_files_of_ours(tmp_path: Path) -> None:
    rdir = tmp_path / "2shot.abcdef12"
    (rdir / "trial0").mkdir(parents=True)
    (rdir / "trial0" / "deeper").mkdir()
    old = [rdir / ".results.json.a1b2c3d4.tmp", rdir / "trial0" / ".metrics.json.x_y_z_12.tmp"]
    keep = [
        rdir / "trial0" / ".copa_demo.default.predictions.jsonl.live1234.tmp",  # recent: a live writer's
        rdir / "results.json", rdir / ".lock", rdir / "trial0" / "notes.tmp", rdir / ".x.tmp",  # not our pattern
        rdir / "trial0" / "deeper" / ".metrics.json.a1b2c3d4.tmp",  # below the depth looked at
    ]
    for p in old + keep:
        p.write_text("x")
    for p in old + keep[1:]:
        _age(p, 3600)
    assert sorted(clean_temp_files(rdir, older_than_s=600)) == sorted(old)
    assert not any(p.exists() for p in old) and all(p.exists() for p in keep)
    assert clean_temp_files(tmp_path / "nonexistent") == []


def _trial(rows: int) -> TrialResult:
    return TrialResult(metrics={"copa_demo.default": {"accuracy": 0.5}}, predictions={"copa_demo.default": [{"i": i} for i in range(rows)]})


def _complete_result(rdir: Path, fp: str = "fp") -> None:
    for t in (0, 1):
        write_trial(rdir, t, _trial(3 + t), fp)
    write_results(rdir, {"fingerprint": fp}, [0, 1])


PRED = "copa_demo.default.predictions.jsonl"


def test_trial_files_are_recorded_and_checked(tmp_path: Path) -> None:
    write_trial(tmp_path, 0, _trial(3), "fp")
    metrics = json.loads((tmp_path / "trial0" / "metrics.json").read_text())
    data = (tmp_path / "trial0" / PRED).read_bytes()
    assert metrics["files"] == {PRED: {"size": len(data), "sha256": __import__("hashlib").sha256(data).hexdigest(),
                                       "mtime_ns": (tmp_path / "trial0" / PRED).stat().st_mtime_ns}}
    assert trial_done(tmp_path, 0, "fp") is True
    (tmp_path / "trial0" / PRED).write_bytes(data[:-1])
    assert trial_done(tmp_path, 0, "fp") is None
    st = result_status(tmp_path, "fp", [0])
    assert st.state == MISSING and st.detail == f"incomplete: trial0/{PRED} is {len(data) - 1} bytes, {len(data)} recorded"


def test_complete_needs_the_recorded_files(tmp_path: Path) -> None:
    _complete_result(tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["files"]) == {f"trial{t}/{n}" for t in (0, 1) for n in ("metrics.json", PRED)}
    assert result_status(tmp_path, "fp", [0, 1]).state == COMPLETE
    (tmp_path / "trial1" / PRED).unlink()
    st = result_status(tmp_path, "fp", [0, 1])
    assert (st.state, st.done_trials, st.detail) == (PARTIAL, [0], f"incomplete: trial1/{PRED} missing")
    assert result_status(tmp_path, "fp", [0]).state == COMPLETE  # only the asked trials' files count


def test_a_complete_result_with_a_lost_metrics_file_is_not_complete(tmp_path: Path) -> None:
    _complete_result(tmp_path)
    (tmp_path / "trial0" / "metrics.json").unlink()
    st = result_status(tmp_path, "fp", [0, 1])
    assert (st.state, st.done_trials, st.detail) == (PARTIAL, [1], "incomplete: trial0/metrics.json missing")


def test_results_without_files_maps_are_checked_by_content_and_then_recorded(tmp_path: Path) -> None:
    """Results of 0.1.0 recorded no files: each scored sub-result's predictions file must be there, in
    whole rows (``n_examples`` of them where the trial says); a whole result gets its ``files`` map added
    to results.json once, by a sweep that launches (store/legacy.py), after which sizes are checked as for newer results."""
    _complete_result(tmp_path)
    for f in [tmp_path / "results.json", *tmp_path.glob("trial*/metrics.json")]:
        data = json.loads(f.read_text())
        del data["files"]
        if f.name == "metrics.json" and data["trial"] == 1:
            data["metrics"]["copa_demo.default"]["n_examples"] = 4
        f.write_text(json.dumps(data))
    legacy = json.loads((tmp_path / "results.json").read_text())
    pred0, pred1 = tmp_path / "trial0" / PRED, tmp_path / "trial1" / PRED
    rows0, rows1 = pred0.read_bytes(), pred1.read_bytes()
    for damage, problem in ((lambda: pred0.unlink(), f"trial0/{PRED} missing"),
                            (lambda: pred0.write_bytes(rows0[:-3]), f"trial0/{PRED} is cut inside a row"),
                            (lambda: pred0.write_bytes(b""), None)):
        damage()
        st = result_status(tmp_path, "fp", [0, 1])
        if problem is None:  # trial 0 recorded no n_examples: an empty file is whole rows
            assert st.state == COMPLETE
            pred0.write_bytes(rows0)
            (tmp_path / "results.json").write_text(json.dumps(legacy))
            continue
        assert (st.state, st.done_trials, st.problems) == (PARTIAL, [1], [problem])
        assert trial_done(tmp_path, 0, "fp") is None and trial_done(tmp_path, 1, "fp") is True
    pred0.write_bytes(rows0)
    pred1.write_bytes(rows1.split(b"\n", 1)[1])  # a row short of the 4 recorded
    assert result_status(tmp_path, "fp", [0, 1]).problems == [f"trial1/{PRED} has 3 of 4 rows"]
    assert result_status(tmp_path, "fp", [0]).state == COMPLETE  # trial 1 not asked for
    assert json.loads((tmp_path / "results.json").read_text()) == legacy  # nothing recorded while a trial is broken
    pred1.write_bytes(rows1)
    assert result_status(tmp_path, "fp", [0, 1]).state == COMPLETE
    assert json.loads((tmp_path / "results.json").read_text()) == legacy  # reading alone writes nothing
    writes: list = []  # a planner's deferred writes, done by a sweep that launches (Planner.commit)
    assert result_status(tmp_path, "fp", [0, 1], record=writes.append).state == COMPLETE
    assert len(writes) == 1 and json.loads((tmp_path / "results.json").read_text()) == legacy
    writes[0]()
    recorded = json.loads((tmp_path / "results.json").read_text())
    assert {k: v for k, v in recorded.items() if k != "files"} == legacy
    assert {k: v["size"] for k, v in recorded["files"].items()} == {
        f"trial{t}/{name}": (tmp_path / f"trial{t}" / name).stat().st_size for t in (0, 1) for name in ("metrics.json", PRED)}
    pred1.write_bytes(rows1[:-1])  # now caught by its recorded size (and by content: the trial is checked again)
    st = result_status(tmp_path, "fp", [0, 1])
    assert st.done_trials == [0] and f"trial1/{PRED} is {len(rows1) - 1} bytes, {len(rows1)} recorded" in st.problems


def test_verify_files_with_hashes_catches_same_size_damage(tmp_path: Path) -> None:
    _complete_result(tmp_path)
    files = json.loads((tmp_path / "results.json").read_text())["files"]
    pred = tmp_path / "trial0" / PRED
    data = pred.read_bytes()
    pred.write_bytes(data.replace(b'"i": 0', b'"i": 9'))
    damaged = [f"trial0/{PRED} content differs from its recorded sha256"]
    assert verify_files(tmp_path, files) == damaged  # a small file written again since (another mtime): hashed
    assert result_status(tmp_path, "fp", [0, 1]).state != COMPLETE
    rec = files[f"trial0/{PRED}"]
    os.utime(pred, ns=(rec["mtime_ns"], rec["mtime_ns"]))  # its recorded mtime: not hashed, planning stays a stat per file
    assert verify_files(tmp_path, files) == [] and verify_files(tmp_path, files, hashes=False) == []
    assert verify_files(tmp_path, files, hashes=True) == damaged  # verify=true, fewshot-eval verify: every file by content


def test_config_yaml_is_omegaconfs_text_byte_for_byte() -> None:
    """store/config_yaml renders each repeated entry once; the text is OmegaConf.to_yaml's for any plain data
    (quoted scalars, long and multi-line strings, odd keys, empty and nested containers), cached or not."""
    import random

    from omegaconf import OmegaConf

    from fewshot_eval.store.config_yaml import config_yaml, render

    rnd = random.Random(0)
    words = ["a", "true", "null", "1", "1.5", "x: y", "k" * 130, "multi\nline", "ünï", "", " lead", "trail ", "#c", "- d",
             "${x}", "'q'", '"dq"', "long " * 30, "tab\there", "k" * 101, "\x85", "a\u2028b"]
    punct = "abcXYZ0123456789 :#-'\"!@%&*{}[],.?|>=~/\\`$^()+;_"
    words += ["".join(rnd.choice(punct) for _ in range(rnd.choice([1, 3, 12, 90, 200]))) for _ in range(40)]  # libyaml's emitter

    def value(depth: int):  # noqa: ANN202
        r = rnd.random()
        if depth > 3 or r < 0.4:
            return rnd.choice([rnd.choice(words), rnd.randint(-5, 5), rnd.random(), True, False, None, 1e20, -0.0])
        if r < 0.7:
            return {rnd.choice([*words, 1, 2, True]): value(depth + 1) for _ in range(rnd.randint(0, 4))}
        return [value(depth + 1) for _ in range(rnd.randint(0, 3))]

    for i in range(1000):
        data = {rnd.choice(words): value(1) for _ in range(rnd.randint(1, 5))}
        data = {"hydra": data} if i % 3 == 0 else data
        cfg = OmegaConf.create(data)
        expected = OmegaConf.to_yaml(cfg)
        assert render(OmegaConf.to_container(cfg)) == expected and config_yaml(cfg) == expected, data
    cfg = OmegaConf.create({"a": "${b}", "b": {"c": 1}})
    assert config_yaml(cfg) == OmegaConf.to_yaml(cfg) and config_yaml(cfg, resolve=True) == OmegaConf.to_yaml(cfg, resolve=True)

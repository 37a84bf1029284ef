"""A result counts as complete only while the files it recorded are there, whole; broken trials are
recomputed (and only they); temp files of killed writes are cleaned by the next sweep."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from cli_helpers import run_cli

ARGS = ["-m", "model=random", "task=copa_demo", "nshot=2", "num_trials=3"]
PRED = "copa_demo.default.predictions.jsonl"


def result_dir(workdir: Path) -> Path:
    [rdir] = (workdir / "results").glob("demo/random/copa_demo/2shot.*")
    return rdir


def mtimes(rdir: Path) -> dict[str, int]:
    return {str(p.relative_to(rdir)): p.stat().st_mtime_ns for p in rdir.glob("trial*/*")}


def plan_rows(workdir: Path, args: list[str]) -> list[str]:
    return [ln for ln in run_cli(args + ["dry_run=true"], workdir).stdout.splitlines() if ln.startswith(("run ", "skip: "))]


def test_complete_result_with_a_deleted_predictions_file_reruns_only_that_trial(workdir: Path) -> None:
    run_cli(ARGS, workdir)
    rdir = result_dir(workdir)
    res = json.loads((rdir / "results.json").read_text())
    assert {f"trial{t}/{n}" for t in range(3) for n in ("metrics.json", PRED)} == set(res["files"])
    metrics1 = json.loads((rdir / "trial1" / "metrics.json").read_text())
    assert metrics1["files"][PRED]["size"] == (rdir / "trial1" / PRED).stat().st_size
    before = mtimes(rdir)
    (rdir / "trial1" / PRED).unlink()
    [row] = plan_rows(workdir, ARGS)
    assert row.startswith("run ") and f"incomplete: trial1/{PRED} missing" in row and "resume: trials [0, 2] already done" in row
    out = run_cli(ARGS, workdir).stdout
    assert "ran 1, skipped 0, failed 0" in out
    after = mtimes(rdir)
    assert {k: v for k, v in after.items() if not k.startswith("trial1/")} == {k: v for k, v in before.items() if not k.startswith("trial1/")}
    assert after["trial1/metrics.json"] != before["trial1/metrics.json"] and (rdir / "trial1" / PRED).exists()
    files = json.loads((rdir / "results.json").read_text())["files"]  # aggregated again, with trial1's new files
    same = ("size", "sha256")  # the random baseline is seeded: the same bytes (written anew: another mtime)
    assert {k: files[f"trial1/{PRED}"][k] for k in same} == {k: res["files"][f"trial1/{PRED}"][k] for k in same}
    assert files["trial1/metrics.json"]["size"] == (rdir / "trial1" / "metrics.json").stat().st_size
    [row] = plan_rows(workdir, ARGS)
    assert row.startswith("skip: complete")


def test_truncated_metrics_of_a_complete_result_split_trials(workdir: Path) -> None:
    """split_trials: only the job of the broken trial runs."""
    args = ARGS + ["split_trials=true"]
    run_cli(args, workdir)
    rdir = result_dir(workdir)
    metrics = rdir / "trial2" / "metrics.json"
    text = metrics.read_text()
    metrics.write_text(text[:100])
    rows = plan_rows(workdir, args)
    assert [r.split()[0] for r in rows].count("run") == 1
    [broken] = [r for r in rows if r.startswith("run ")]
    assert " 2 " in broken and f"incomplete: trial2/metrics.json is 100 bytes, {len(text)} recorded" in broken
    out = run_cli(args, workdir).stdout
    assert "2 skip: complete, 1 run" in out and "ran 1" in out
    assert json.loads(metrics.read_text())["trial"] == 2
    assert all(r.startswith("skip: complete") for r in plan_rows(workdir, args))


def test_partial_result_with_a_truncated_predictions_file_recomputes_that_trial(workdir: Path) -> None:
    run_cli(ARGS, workdir)
    rdir = result_dir(workdir)
    (rdir / "results.json").unlink()  # as if killed before aggregating: all trials there, no results.json
    pred = rdir / "trial2" / PRED
    whole = pred.read_bytes()
    pred.write_bytes(whole[: len(whole) // 2])
    before = mtimes(rdir)
    [row] = plan_rows(workdir, ARGS)
    assert f"incomplete: trial2/{PRED} is {len(whole) // 2} bytes, {len(whole)} recorded; resume: trials [0, 1] already done" in row
    assert "ran 1" in run_cli(ARGS, workdir).stdout
    assert pred.read_bytes() == whole  # recomputed (the random baseline is seeded), not aggregated as it was
    after = mtimes(rdir)
    assert all(after[k] == before[k] for k in before if not k.startswith("trial2/"))
    assert json.loads((rdir / "results.json").read_text())["trials"] == [0, 1, 2]


def test_results_of_0_1_0_without_files_maps_are_checked_by_content(workdir: Path) -> None:
    """0.1.0 recorded no files: a deleted predictions file is found all the same (store/legacy.py), only
    its trial is recomputed, and the new results.json lists every trial's files."""
    run_cli(ARGS, workdir)
    rdir = result_dir(workdir)
    for f in [rdir / "results.json", *rdir.glob("trial*/metrics.json")]:
        data = json.loads(f.read_text())
        del data["files"]
        f.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    before = mtimes(rdir)
    (rdir / "trial1" / PRED).unlink()
    [row] = plan_rows(workdir, ARGS)
    assert row.startswith("run ") and f"incomplete: trial1/{PRED} missing" in row and "resume: trials [0, 2] already done" in row
    assert "ran 1" in run_cli(ARGS, workdir).stdout
    after = mtimes(rdir)
    assert {k: v for k, v in after.items() if not k.startswith("trial1/")} == {k: v for k, v in before.items() if not k.startswith("trial1/")}
    res = json.loads((rdir / "results.json").read_text())
    assert set(res["files"]) == {f"trial{t}/{n}" for t in range(3) for n in ("metrics.json", PRED)}
    [row] = plan_rows(workdir, ARGS)
    assert row.startswith("skip: complete")


def test_temp_files_of_killed_writes_are_removed_by_the_next_sweep(workdir: Path) -> None:
    run_cli(ARGS, workdir)
    rdir = result_dir(workdir)
    (rdir / "results.json").unlink()
    (rdir / "trial1" / PRED).unlink()
    old = [rdir / "trial1" / f".{PRED}.k1ll3d_x.tmp", rdir / ".results.json.abcd1234.tmp"]
    fresh = rdir / "trial1" / ".metrics.json.l1vewr1t.tmp"  # a live writer's (recent): left alone
    other = rdir / "trial1" / "notes.tmp"  # not our pattern
    for p in old + [fresh, other]:
        p.write_text("partial")
    hour_ago = time.time() - 3600
    for p in old + [other]:
        os.utime(p, (hour_ago, hour_ago))
    assert "ran 1" in run_cli(ARGS, workdir).stdout
    assert not any(p.exists() for p in old)
    assert fresh.exists() and other.exists()


def test_recalc_refuses_a_result_with_broken_files(workdir: Path) -> None:
    run_cli(ARGS, workdir)
    rdir = result_dir(workdir)
    (rdir / "trial0" / PRED).write_text("")
    proc = run_cli(["recalc", "results", "--scoring", "mean"], workdir, check=False)
    assert proc.returncode == 1 and f"is incomplete (trial0/{PRED} is 0 bytes" in proc.stderr


# ------------------------------------------------------------------------------- integrity: nothing wrong looks complete
def planned(workdir: Path, args: list[str]) -> list[tuple[str, str]]:
    """(status, detail) of each planned job, planned in this process (as a dry run, cheaper than one)."""
    from fewshot_eval.api import plan

    _, jobs = plan([a for a in args if a != "-m"] + [f"output_dir={workdir / 'results'}"])
    return [(j.status, j.detail) for j in jobs]


def verify(*dirs: Path) -> tuple[int, str, str]:
    """``fewshot-eval verify DIRS`` in this process: (exit status, stdout, stderr)."""
    import contextlib
    import io

    from fewshot_eval import commands

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = commands.run(["verify", *map(str, dirs)])
    return rc, out.getvalue(), err.getvalue()


def test_garbage_of_the_same_size_is_found_by_content_and_recomputed(workdir: Path) -> None:
    """A predictions or metrics file overwritten with garbage of its size used to stay 'skip: complete'."""
    run_cli(ARGS, workdir)
    rdir = result_dir(workdir)
    pred, metrics = rdir / "trial1" / PRED, rdir / "trial2" / "metrics.json"
    whole = {p: p.read_bytes() for p in (pred, metrics)}
    for p, data in whole.items():
        p.write_bytes(data[::-1])  # same size, other bytes
    [(status, detail)] = planned(workdir, ARGS)
    assert status == "run" and f"trial1/{PRED} content differs from its recorded sha256" in detail, detail
    assert "trial2/metrics.json content differs" in detail and "resume: trials [0] already done" in detail
    rc, out, err = verify(workdir / "results")
    assert rc == 1 and out.startswith(f"{rdir}: ") and "content differs" in out and "1 of 1 results are broken" in err, out + err
    assert "ran 1" in run_cli(ARGS, workdir).stdout
    assert pred.read_bytes() == whole[pred]  # recomputed (the random baseline is seeded)
    assert json.loads(metrics.read_text())["metrics"] == json.loads(whole[metrics])["metrics"]
    assert verify(workdir / "results")[0:2] == (0, "fewshot-eval: 1 results checked, every file as recorded.\n")
    assert planned(workdir, ARGS)[0][0] == "skip: complete"


def test_a_large_file_is_hashed_only_with_verify_true(workdir: Path, monkeypatch) -> None:
    from fewshot_eval.store import status

    run_cli(ARGS, workdir)
    pred = result_dir(workdir) / "trial0" / PRED
    data = pred.read_bytes()
    pred.write_bytes(data[::-1])
    monkeypatch.setattr(status, "HASH_MAX_BYTES", len(data) - 1)  # as if it were a large file
    assert planned(workdir, ARGS)[0][0] == "skip: complete"  # sizes only: planning stays cheap
    [(st, detail)] = planned(workdir, ARGS + ["verify=true"])
    assert st == "run" and f"trial0/{PRED} content differs" in detail, detail
    assert verify(result_dir(workdir))[0] == 1  # verify hashes every file


def test_an_empty_or_foreign_results_json_is_corrupt_and_recomputed(workdir: Path) -> None:
    """``{}`` or another result's results.json used to read 'stale' and be left alone; report showed the copy."""
    other = ["-m", "model=random", "task=copa_demo", "nshot=1", "num_trials=3"]
    run_cli(ARGS, workdir)
    run_cli(other, workdir)
    rdir = result_dir(workdir)
    [odir] = (workdir / "results").glob("demo/random/copa_demo/1shot.*")
    good = json.loads((rdir / "results.json").read_text())
    foreign = json.loads((odir / "results.json").read_text())
    legacy_copy = {k: v for k, v in foreign.items() if k != "identity_digest"}  # as written before it was recorded
    for text, words in (("{}", "corrupt: results.json lacks fingerprint, trials, results"),
                        (json.dumps(foreign), f"corrupt: results.json is result {odir.name[-8:]}'s, not {rdir.name}'s"),
                        (json.dumps({**legacy_copy, "nshot": 2}), "corrupt: results.json's fingerprint is not the one identity.json records")):
        (rdir / "results.json").write_text(text)
        [(status, detail)] = planned(workdir, ARGS)
        assert status == "run" and detail.startswith(words) and "aggregate: every trial is done" in detail, detail
        assert verify(rdir)[0] == 1
    rep = run_cli(["report", "results"], workdir)
    assert f"skipped {rdir / 'results.json'}".replace(str(workdir) + "/", "") in rep.stderr and "not shown" in rep.stderr, rep.stderr
    out = run_cli(ARGS, workdir).stdout
    assert "ran 1" in out
    now = json.loads((rdir / "results.json").read_text())
    assert now["results"] == good["results"] and now["identity_digest"].startswith(rdir.name[-8:])
    [kept] = rdir.glob("results.json.corrupt-*")  # the bad file is kept aside, not deleted
    assert json.loads(kept.read_text())["nshot"] == 2
    assert planned(workdir, ARGS)[0][0] == "skip: complete"


def test_wrong_kinds_of_files_are_moved_aside_and_recomputed(workdir: Path) -> None:
    """results.json that is a directory, a trial dir that is a file, a result dir that is a file: the job
    used to error; now what is there is kept aside (never deleted) and the result recomputed."""
    run_cli(ARGS, workdir)
    rdir = result_dir(workdir)
    good = json.loads((rdir / "results.json").read_text())["results"]
    (rdir / "results.json").unlink()
    (rdir / "results.json").mkdir()
    shutil.rmtree(rdir / "trial1")
    (rdir / "trial1").write_text("not a dir")
    [(status, detail)] = planned(workdir, ARGS)
    assert status == "run" and "corrupt: results.json is a directory" in detail and "corrupt: trial1 is a file, not a directory" in detail, detail
    assert "ran 1" in run_cli(ARGS, workdir).stdout
    assert json.loads((rdir / "results.json").read_text())["results"] == good
    assert len(list(rdir.glob("results.json.corrupt-*"))) == 1 and (next(rdir.glob("trial1.corrupt-*"))).read_text() == "not a dir"
    shutil.rmtree(rdir)
    rdir.write_text("a file where the result dir goes")
    [(status, detail)] = planned(workdir, ARGS)
    assert status == "run" and f"corrupt: the result dir {rdir.name} is a file" in detail, detail
    assert "ran 1" in run_cli(ARGS, workdir).stdout
    assert json.loads((rdir / "results.json").read_text())["results"] == good
    [aside] = rdir.parent.glob(rdir.name + ".old-*")
    assert aside.read_text() == "a file where the result dir goes"


def test_leftovers_beside_a_complete_result_are_tidied_by_the_next_sweep(workdir: Path) -> None:
    """Temp files, a submitting.json older than the result, dead owners' lock files (FEWSHOT_LOCKS=files)
    and a deleted identity.json used to stay beside a complete result for good (store/leftovers.py)."""
    import socket

    from fewshot_eval.store.locks import _start_time, result_lock_path

    run_cli(ARGS, workdir)
    rdir = result_dir(workdir)
    identity = (rdir / "identity.json").read_text()
    (rdir / "identity.json").unlink()
    hour_ago = time.time() - 3600
    dead = json.dumps({"host": socket.gethostname(), "pid": 4194000, "start": "1"})  # no such process
    live = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())})
    sibling = result_lock_path(rdir)
    old = {rdir / "trial1" / f".{PRED}.k1ll3d_x.tmp": "partial", rdir / ".results.json.abcd1234.tmp": "partial",
           rdir / "submitting.json": json.dumps({"job_name": "fewshot-x-1", "token": "t"}),
           rdir / ".lock.s-0123456789ab": dead, rdir / ".lock.trial0.x": dead, sibling.with_name(sibling.name + ".s-0123456789ab"): dead}
    kept = {rdir / "trial1" / ".metrics.json.l1vewr1t.tmp": "a live writer's", rdir / ".lock.s-aaaaaaaaaaaa": live,
            rdir / ".lock.trial1": ""}  # the flock file itself stays
    for p, text in {**old, **kept}.items():
        p.write_text(text)
    for p in old:
        os.utime(p, (hour_ago, hour_ago))  # submitting.json: written before the result completed
    assert planned(workdir, ARGS)[0][0] == "skip: complete"  # planning alone (a dry run) writes nothing
    assert all(p.exists() for p in old) and not (rdir / "identity.json").exists()
    assert "1 skip: complete" in run_cli(ARGS, workdir, env={"FEWSHOT_LOCKS": "files"}).stdout
    assert [p for p in old if p.exists()] == []
    assert all(p.exists() for p in kept)
    assert (rdir / "identity.json").read_text() == identity

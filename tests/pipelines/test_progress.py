"""The work queue and the live view on a constructed grid: finished runs
are skipped, a run a live queue holds is left alone, a stale lock is
pending, and a failing run is recorded with its exit code and retried."""

import json
import os
import socket
import subprocess
import time

from pipelines import grid
from pipelines import progress
from zapkeras.outputs import files


def _run(name, seed, *params):
    return grid.Run(name, ("gin/permuted/base.gin",), seed, params)


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _constructed(root):
    """a: 2 done (60 s, 120 s); b: seed 0 will fail, seed 1 held by this
    process for 30 s; c: seed 0 never started, seed 1 left with a dead
    lock. Returns the runs and when b seed 1 started."""
    started = time.time() - 30
    runs = {
        "a0": _run("a", 0),
        "a1": _run("a", 1),
        "b0": _run("b", 0, "NoSuchThing.x = 1"),  # exits 2 at parsing
        "b1": _run("b", 1),
        "c0": _run("c", 0),
        "c1": _run("c", 1),
    }
    for key, seconds in (("a0", 60.0), ("a1", 120.0)):
        out = runs[key].output_dir(root)
        files.write_json(os.path.join(out, "results.json"), {"seed": 0})
        files.write_json(
            os.path.join(out, progress.RECORD),
            {"exit_code": 0, "seconds": seconds},
        )
    for key, pid in (("b1", os.getpid()), ("c1", _dead_pid())):
        out = runs[key].output_dir(root)
        os.makedirs(out)
        with open(os.path.join(out, progress.LOCK), "w") as f:
            json.dump(
                {"host": socket.gethostname(), "pid": pid, "started": started},
                f,
            )
    return runs, started


def test_queue_skips_done_and_held_runs_and_records_failures(tmp_path):
    root = str(tmp_path / "grid")
    runs, _ = _constructed(root)
    a0_record = os.path.join(runs["a0"].output_dir(root), progress.RECORD)
    before = os.path.getmtime(a0_record)
    queued = [runs[k] for k in ("a0", "a1", "b0", "b1")]
    failed = grid.run_all(queued, root)
    assert failed == [runs["b0"]]
    assert os.path.getmtime(a0_record) == before  # not run again
    b0 = runs["b0"].output_dir(root)
    record = files.read_json(os.path.join(b0, progress.RECORD))
    assert record["exit_code"] == 2 and record["seconds"] > 0
    assert "--gin_param=NoSuchThing.x = 1" in record["command"]
    with open(os.path.join(b0, "pipeline.log")) as f:
        assert "NoSuchThing" in f.read()
    assert not os.path.exists(os.path.join(b0, progress.LOCK))
    b1 = runs["b1"].output_dir(root)
    assert os.listdir(b1) == [progress.LOCK]  # held: never started
    assert [e["dir"] for e in files.read_json(f"{root}/grid.json")["runs"]] == [
        "a/seed_0",
        "a/seed_1",
        "b/seed_0",
        "b/seed_1",
    ]


def test_status_counts_eta_and_view(tmp_path, capsys):
    root = str(tmp_path / "grid")
    runs, started = _constructed(root)
    out = runs["b0"].output_dir(root)
    files.write_json(
        os.path.join(out, progress.RECORD), {"exit_code": 2, "seconds": 5.0}
    )
    progress.write_manifest(
        root, [(r.name, r.seed, r.output_dir(root)) for r in runs.values()]
    )
    statuses = progress.status(progress.entries(root))
    states = {(n, s): st for n, s, _, st, _ in statuses}
    assert states == {
        ("a", 0): "done",
        ("a", 1): "done",
        ("b", 0): "failed",
        ("b", 1): "running",
        ("c", 0): "pending",
        ("c", 1): "pending",  # its lock's process is gone
    }
    s = progress.summary(statuses, now=started + 30)
    assert s["mean_seconds"] == 90.0
    # 2 pending × 90 s + 60 s left of the running one, 1 in flight.
    assert s["eta_seconds"] == 240.0
    progress.main([root])
    view = capsys.readouterr().out
    assert "2/6 done, 1 running, 1 failed, 2 pending" in view
    assert "ETA 4.0 min" in view
    assert "a  0✓ 1✓" in view and "b  0✗ 1▶" in view and "c  0· 1·" in view
    assert f"failed  b seed 0: exit 2; see {out}/pipeline.log" in view
    assert "running b seed 1" in view


def test_view_without_manifest_lists_the_run_directories(tmp_path):
    root = str(tmp_path / "grid")
    runs, _ = _constructed(root)
    listed = [(n, s) for n, s, _ in progress.entries(root)]
    # c seed 0 has no directory yet, so only a manifest can list it.
    assert listed == [("a", 0), ("a", 1), ("b", 1), ("c", 1)]
    assert progress.entries(root)[0][2] == runs["a0"].output_dir(root)

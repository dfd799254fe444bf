"""The grid on keras-tuner's oracle and the live view of its state, on
constructed grids: finished runs are not run again, failures are recorded
with their exit codes and rerun by the next invocation, a run the chief
gave out is running while the chief lives, and a second invocation does
not run a grid a live one runs."""

import os
import subprocess
import sys
import time

import pytest

from pipelines import grid
from pipelines import progress
from pipelines import reuse
from zapkeras.errors import UsageError
from zapkeras.outputs import files
from zapkeras.tuning import distributed


def _run(name, seed):
    return grid.Run(name, ("gin/permuted/base.gin",), seed)


def _fake_command(monkeypatch, fail=()):
    """Runs write an empty results.json, or exit 2 for seeds in `fail`."""

    def command(run, root, data_dir=None, extra_args=()):
        results = os.path.join(run.output_dir(root), "results.json")
        if run.seed in fail:
            return [sys.executable, "-c", "print('bad'); raise SystemExit(2)"]
        return [sys.executable, "-c", f"open({results!r}, 'w').write('{{}}')"]

    monkeypatch.setattr(grid, "command", command)
    monkeypatch.setattr(reuse, "check", lambda runs, root: None)


def _project(root):
    return os.path.join(root, files.read_json(f"{root}/grid.json")["oracle"])


def test_done_runs_are_skipped_and_failures_rerun_next_time(
    tmp_path, monkeypatch
):
    root = str(tmp_path / "grid")
    runs = [_run("a", 0), _run("a", 1), _run("b", 0), _run("b", 1)]
    done = os.path.join(runs[0].output_dir(root), "results.json")
    files.write_json(done, {"seed": 0})
    before = os.path.getmtime(done)
    _fake_command(monkeypatch, fail={1})
    assert grid.run_all(runs, root, jobs=2) == [runs[1], runs[3]]
    assert os.path.getmtime(done) == before  # not run again
    with open(os.path.join(runs[1].output_dir(root), "pipeline.log")) as f:
        assert f.read() == "bad\n"
    entries = [(r.name, r.seed, r.output_dir(root)) for r in runs]
    statuses = progress.status(root, entries)
    states = {(n, s): (st, d) for n, s, _, st, d in statuses}
    state, details = states[("a", 1)]
    assert state == "failed" and details["exit_code"] == 2
    assert details["seconds"] > 0
    assert states[("a", 0)][0] == states[("b", 0)][0] == "done"
    manifest = files.read_json(f"{root}/grid.json")
    assert [e["dir"] for e in manifest["runs"]] == [
        "a/seed_0",
        "a/seed_1",
        "b/seed_0",
        "b/seed_1",
    ]
    _fake_command(monkeypatch)  # fixed: the rerun runs only the failures
    assert grid.run_all(runs, root) == []
    assert os.path.getmtime(done) == before
    assert all(grid.is_done(r, root) for r in runs)
    states = [st for *_, st, _ in progress.status(root, entries)]
    assert states == ["done"] * 4


def _constructed(root):
    """a: 2 done (60 s, 120 s); b: seed 0 failed (exit 2), seed 1 given
    to worker job.0 30 s ago; c: never given out. The chief is this
    process. Returns the runs, the oracle and when b seed 1 started."""
    runs = {
        k: _run(k[0], int(k[1])) for k in ("a0", "a1", "b0", "b1", "c0", "c1")
    }
    keys = [progress.key(root, r.output_dir(root)) for r in runs.values()]
    oracle = distributed.leased(grid.RunsOracle)(keys)
    oracle._set_project_dir(root, "keras_tuner/grid_test")
    entries = [(r.name, r.seed, r.output_dir(root)) for r in runs.values()]
    progress.write_manifest(root, entries, "keras_tuner/grid_test")
    for key, seconds, code in (("a0", 60.0, 0), ("a1", 120.0, 0), ("b0", 5, 2)):
        trial = oracle.create_trial("job.0")
        metrics = {"seconds": seconds, "exit_code": float(code)}
        oracle.update_trial(trial.trial_id, metrics)
        trial.status = "FAILED" if code else "COMPLETED"
        oracle.end_trial(trial)
        if not code:
            out = runs[key].output_dir(root)
            files.write_json(os.path.join(out, "results.json"), {})
    running = oracle.create_trial("job.0")
    started = time.time() - 30
    oracle._started[running.trial_id] = started
    oracle.save()
    return runs, oracle, started


def test_status_counts_eta_and_view(tmp_path, capsys):
    root = str(tmp_path / "grid")
    runs, _, started = _constructed(root)
    statuses = progress.status(root, progress.entries(root))
    states = {(n, s): st for n, s, _, st, _ in statuses}
    assert states == {
        ("a", 0): "done",
        ("a", 1): "done",
        ("b", 0): "failed",
        ("b", 1): "running",
        ("c", 0): "pending",
        ("c", 1): "pending",
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
    out = runs["b0"].output_dir(root)
    assert f"failed  b seed 0: exit 2; see {out}/pipeline.log" in view
    assert "running b seed 1" in view and "worker job.0" in view


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_runs_of_a_dead_chief_are_pending_and_a_live_one_keeps_its_grid(
    tmp_path, monkeypatch
):
    root = str(tmp_path / "grid")
    runs, oracle, _ = _constructed(root)
    state = os.path.join(_project(root), "oracle.json")
    saved = files.read_json(state)
    files.write_json(
        state, {**saved, "chief": {**saved["chief"], "pid": _dead_pid()}}
    )
    b1 = {
        (n, s): st
        for n, s, _, st, _ in progress.status(root, progress.entries(root))
    }
    assert b1[("b", 1)] == "pending"

    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    try:
        files.write_json(
            state, {**saved, "chief": {**saved["chief"], "pid": other.pid}}
        )
        monkeypatch.setattr(reuse, "check", lambda runs, root: None)
        monkeypatch.setattr(grid, "_Grid", _SameProject)
        with pytest.raises(
            UsageError, match=f"pid {other.pid} on .* runs this grid"
        ):
            grid.run_all(list(runs.values()), root)
    finally:
        other.kill()


class _SameProject(grid._Grid):
    project = "keras_tuner/grid_test"


def test_view_without_manifest_lists_the_run_directories(tmp_path):
    root = str(tmp_path / "grid")
    runs = [_run("a", 0), _run("a", 1), _run("c", 1)]
    for run in runs:
        os.makedirs(run.output_dir(root))
    listed = [(n, s) for n, s, _ in progress.entries(root)]
    assert listed == [("a", 0), ("a", 1), ("c", 1)]
    assert progress.entries(root)[0][2] == runs[0].output_dir(root)

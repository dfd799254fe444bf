"""What the work queue prints: a line per run started off a terminal, a
bar over the runs on one; failures in both."""

import os
import sys

import pytest

from pipelines import grid
from pipelines import reuse
from zapkeras.outputs import console


def _fake_runs(monkeypatch):
    """Three runs of a stand-in command; seed 1 fails."""

    def command(run, root, data_dir=None, extra_args=()):
        results = os.path.join(run.output_dir(root), "results.json")
        code = (
            "import sys; sys.exit(1)"
            if run.seed == 1
            else f"open({results!r}, 'w').write('{{}}')"
        )
        return [sys.executable, "-c", code]

    monkeypatch.setattr(grid, "command", command)
    monkeypatch.setattr(reuse, "check", lambda runs, root: None)
    return [grid.Run("cell", ("x.gin",), seed, ()) for seed in range(3)]


@pytest.mark.parametrize("mode", ["lines", "bar"])
def test_queue_progress(mode, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(console.MODE_VARIABLE, mode)
    monkeypatch.setenv("COLUMNS", "200")
    runs = _fake_runs(monkeypatch)
    root = str(tmp_path / "study")
    assert grid.run_all(runs, root) == [runs[1]]
    out = capsys.readouterr().out
    assert "failed (exit 1); see " in out
    assert out.endswith("[2/3 done, 1 failed]\n")
    started = [f"] cell seed {seed}\n" in out for seed in range(3)]
    if mode == "lines":
        assert "\r" not in out and all(started)
        assert "[0/3 done, 1 running, 0 failed, ETA ?] cell seed 0\n" in out
    else:
        assert not any(started)  # the bar says it
        assert "\rstudy \x1b[1m2/3" in out and "/run" in out

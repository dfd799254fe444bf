"""An output directory holds one run: started again there with other
settings a run exits 2 naming them (old → new) and changes nothing, with the
same settings it resumes, with --overwrite it starts afresh; a pipeline does
not reuse a cell directory that holds another run, and every worker of a
multi-worker run stops when one worker's directory holds another run."""

import hashlib
import os
import shutil

import pytest

from pipelines import grid
from tests.cli_utils import results_without_wall_time
from tests.cli_utils import run_module
from tests.test_multi_worker import _launch_cluster
from tests.test_train_cli import TINY

WIDER = "--gin_param=WIDTH = 12"  # TINY has WIDTH = 8


def _tree(path):
    """{relative path: sha256} of every file under `path`."""
    digests = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                digests[os.path.relpath(full, path)] = hashlib.sha256(
                    f.read()
                ).hexdigest()
    return digests


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("finished") / "run")
    proc = run_module("zapkeras.train", *TINY, f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_other_settings_exit_2_and_change_nothing(finished):
    before = _tree(finished)
    proc = run_module(
        "zapkeras.train", *TINY, WIDER, "--seed=1", f"--output_dir={finished}"
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "WIDTH: 8 → 12" in proc.stderr
    assert "--seed: 0 → 1" in proc.stderr
    assert "--overwrite" in proc.stderr and "--output_dir" in proc.stderr
    assert _tree(finished) == before


def test_same_settings_resume(finished):
    before = results_without_wall_time(finished)
    proc = run_module("zapkeras.train", *TINY, f"--output_dir={finished}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1/2" not in proc.stdout  # nothing retrained
    assert results_without_wall_time(finished) == before


def test_overwrite_starts_afresh_and_keeps_foreign_files(finished, tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(finished, out)
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("mine")
    proc = run_module(
        "zapkeras.train", *TINY, WIDER, "--overwrite", f"--output_dir={out}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--overwrite: deleted the previous run" in proc.stdout
    assert "pretrain[iid] epoch 1/2" in proc.stdout  # trained again
    with open(os.path.join(out, "config.gin")) as f:
        assert "WIDTH = 12" in f.read()
    with open(os.path.join(out, "notes.txt")) as f:
        assert f.read() == "mine"
    assert results_without_wall_time(out)["conditions"].keys() == {
        "iid",
        "iid_zap",
    }


def _cell(*extra):
    files = [a.split("=", 1)[1] for a in TINY if a.startswith("--gin_file=")]
    params = [
        a.split("=", 1)[1] for a in [*TINY, *extra] if a.startswith("--gin_p")
    ]
    return grid.Run("quick/cell", tuple(files), 0, tuple(params))


def test_pipeline_refuses_a_cell_holding_another_run(
    finished, tmp_path, capsys
):
    root = str(tmp_path / "grid")
    shutil.copytree(finished, _cell().output_dir(root))
    assert grid.run_all([_cell()], root) == []  # same run: done, skipped
    before = _tree(root)
    with pytest.raises(SystemExit) as exit_:
        grid.run_all([_cell(WIDER)], root)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "quick/cell seed 0" in err and "WIDTH: 8 → 12" in err
    assert _tree(root) == before


@pytest.mark.slow
def test_every_worker_stops_when_one_holds_another_run(finished, tmp_path):
    out = str(tmp_path / "run")
    record = os.path.join(".zapkeras", "identity.json")
    os.makedirs(os.path.join(out, ".zapkeras"))
    shutil.copy(os.path.join(finished, record), os.path.join(out, record))
    (chief, chief_err), (worker, worker_err) = _launch_cluster(
        [*TINY, WIDER], out
    )
    assert chief == 2 and "WIDTH: 8 → 12" in chief_err, chief_err[-3000:]
    assert worker == 2 and "another worker" in worker_err, worker_err[-3000:]
    assert os.listdir(out) == [".zapkeras"]

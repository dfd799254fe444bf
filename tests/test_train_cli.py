"""`python -m zapkeras.train` as a user runs it: outputs, resume, and exit
status 2 with a one-paragraph message for mistakes."""

import json
import os

import pytest

from tests.cli_utils import quickstart_tiny
from tests.cli_utils import read_scalar_tags
from tests.cli_utils import run_module
from tests.omniglot_layout import build_omniglot
from tests.omniglot_layout import needs_omniglot

TINY = quickstart_tiny(
    width=8,
    epochs=2,
    runs=2,
    rates="(0.01, 0.001)",
    extra=["iid_pretraining.log_every_n_steps = 1"],
)


def _results(output_dir):
    with open(os.path.join(output_dir, "results.json")) as f:
        return json.load(f)


def _without_wall_time(obj):
    if isinstance(obj, dict):
        return {
            k: _without_wall_time(v)
            for k, v in obj.items()
            if k != "wall_seconds"
        }
    return obj


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("quick") / "run")
    proc = run_module("zapkeras.train", *TINY, f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_writes_every_spec_output(quick_run):
    out, proc = quick_run
    results = _results(out)
    assert results["experiment"] == "quickstart"
    assert results["seed"] == 0
    conditions = results["conditions"]
    assert conditions["iid"]["pretrain"]["zap"] is False
    assert conditions["iid_zap"]["pretrain"]["zap"] is True
    for result in conditions.values():
        assert result["pretrain"]["method"] == "iid"
        assert 0.0 <= result["pretrain"]["val_accuracy"] <= 1.0
        seq = result["transfer"]["sequential"]
        assert seq["best_lr"] in (0.01, 0.001)
        assert set(seq["by_lr"]) == {"0.01", "0.001"}
        assert 0.0 <= seq["test_accuracy"] <= 1.0
    with open(os.path.join(out, "config.gin")) as f:
        config = f.read()
    assert "Zapping" in config and "WIDTH = 8" in config
    assert os.path.getsize(
        os.path.join(out, "plots", "transfer_sequential.png")
    )
    assert os.listdir(os.path.join(out, "checkpoints", "iid_zap", "pretrain"))
    assert "pretraining → transfer" in proc.stdout
    assert "iid_zap" in proc.stdout.split("pretraining → transfer")[1]


def test_tensorboard_tags_are_namespaced(quick_run):
    out, _ = quick_run
    logdir = os.path.join(out, "tensorboard", "iid_zap")
    tags = read_scalar_tags(os.path.join(logdir, "train"))
    assert "pretrain/loss" in tags
    assert "pretrain/epoch_accuracy" in tags
    validation = read_scalar_tags(os.path.join(logdir, "validation"))
    assert "pretrain/epoch_accuracy" in validation
    assert "transfer/sequential/best_lr/test_accuracy_seen" in tags
    assert "transfer/sequential/lr_0.01/train_accuracy_all" in tags


def test_rerun_resumes_and_reproduces(quick_run):
    out, _ = quick_run
    before = _results(out)
    proc = run_module("zapkeras.train", *TINY, f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1/2" not in proc.stdout  # nothing retrained
    assert _without_wall_time(_results(out)) == _without_wall_time(before)


@pytest.mark.slow
def test_same_seed_same_results(quick_run, tmp_path):
    out, _ = quick_run
    again = str(tmp_path / "again")
    proc = run_module("zapkeras.train", *TINY, f"--output_dir={again}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _without_wall_time(_results(again)) == _without_wall_time(
        _results(out)
    )


@needs_omniglot
def test_real_omniglot_original_layout(tmp_path):
    build_omniglot(str(tmp_path / "data"))
    out = str(tmp_path / "run")
    proc = run_module(
        "zapkeras.train",
        "--gin_file=gin/omniglot/iid_zap.gin",
        f"--data_dir={tmp_path / 'data'}",
        f"--output_dir={out}",
        "--gin_param=WIDTH = 8",
        "--gin_param=PRETRAIN_CLASSES = 20",
        "--gin_param=PRETRAIN_EPOCHS = 2",
        "--gin_param=TRANSFER_CLASSES = 10",
        "--gin_param=TRANSFER_RUNS = 1",
        "--gin_param=TRANSFER_LRS = (0.001,)",
        "--gin_param=sequential_transfer.eval_every = 5",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = _results(out)
    assert results["experiment"] == "omniglot/iid_zap"
    assert results["pretrain"]["zap"] is True
    assert 0.0 <= results["transfer"]["sequential"]["test_accuracy"] <= 1.0


def test_missing_dataset_names_the_paths(tmp_path):
    out = tmp_path / "run"
    proc = run_module(
        "zapkeras.train",
        "--gin_file=gin/omniglot/iid.gin",
        f"--data_dir={tmp_path / 'empty'}",
        f"--output_dir={out}",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert str(tmp_path / "empty" / "omniglot") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()

"""The TensorBoard layout of README "Outputs", read back with TensorBoard's
own reader from a tiny continual run (selective weight reinit, 2 tasks) and
a tiny transfer run (the quickstart's iid / iid_zap conditions).

Per-task tags step by task number from 1, as the console counts tasks.
"""

import os

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.cli_utils import CONTINUAL_TINY
from tests.cli_utils import quickstart_tiny
from tests.cli_utils import run_module

TRANSFER_TINY = quickstart_tiny(extra=["iid_pretraining.log_every_n_steps = 1"])
CONTINUAL = [
    "--gin_file=gin/permuted/swr.gin",
    *CONTINUAL_TINY,
    "--gin_param=continual_learning.online_window = 2",
]


def _run(tmp_path_factory, name, args):
    out = str(tmp_path_factory.mktemp(name) / "run")
    proc = run_module("zapkeras.train", *args, f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return os.path.join(out, "tensorboard")


@pytest.fixture(scope="module")
def continual(tmp_path_factory):
    return _run(tmp_path_factory, "continual", CONTINUAL)


@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
    return _run(tmp_path_factory, "transfer", TRANSFER_TINY)


def _events(logdir):
    acc = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    return acc


def _runs(logdir):
    """{run directory relative to logdir: its accumulator}."""
    return {
        os.path.relpath(root, logdir): _events(root)
        for root, _, names in os.walk(logdir)
        if any(n.startswith("events.out") for n in names)
    }


def _steps(acc, tag):
    return [event.step for event in acc.Tensors(tag)]


def _check_common(runs):
    """Two runs only, no task sections, no epoch scalars, no `val_` tags;
    the config as a code block and an HParams session in the train run."""
    assert {os.path.basename(r) for r in runs} <= {"train", "validation"}
    for acc in runs.values():
        tags = acc.Tags()["tensors"]
        assert not [t for t in tags if "task_0" in t], tags
        assert not [t for t in tags if "val_" in t], tags
        assert not [t for t in tags if t.split("/")[-1] == "epoch"], tags
    train = runs["train"]
    (event,) = train.Tensors("config/operative_gin")
    text = tf.make_ndarray(event.tensor_proto).item().decode()
    assert text.startswith("    ") and "\n    " in text
    start = plugin_data_pb2.HParamsPluginData.FromString(
        train.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    ).session_start_info
    return train, start.hparams


def test_continual_layout(continual):
    runs = _runs(continual)
    train, hparams = _check_common(runs)
    tags = train.Tags()["tensors"]
    assert _steps(train, "continual/test_accuracy") == [1, 2]
    assert _steps(train, "continual/online_accuracy") == [1, 2]
    assert _steps(train, "continual/diagnostics/dead_fraction") == [1, 2]
    for tag in ("continual/steps/online_accuracy", "continual/steps/loss"):
        assert tag in tags
    assert [t for t in tags if t.startswith("method/swr/")], tags
    assert hparams["TASKS"].number_value == 2
    assert hparams["DATASET"].string_value == "embedded"
    assert "results/continual/test_accuracy" in tags


def test_transfer_layout(transfer):
    assert sorted(os.listdir(transfer)) == ["iid", "iid_zap", "train"]
    runs = _runs(os.path.join(transfer, "iid_zap"))
    assert sorted(runs) == ["train", "validation"]
    train, hparams = _check_common(runs)
    tags = train.Tags()["tensors"]
    validation = runs["validation"].Tags()["tensors"]
    assert {"pretrain/epoch_accuracy", "pretrain/epoch_loss"} <= set(tags)
    assert {"pretrain/epoch_accuracy", "pretrain/epoch_loss"} <= set(validation)
    assert "pretrain/loss" in tags
    assert "transfer/sequential/best_lr/test_accuracy_seen" in tags
    assert "method/zapping/resets" in tags
    assert not [t for t in tags if t.startswith("pretrain/method")]
    assert hparams["condition"].string_value == "iid_zap"
    assert hparams["WIDTH"].number_value == 4
    for tag in (
        "results/pretrain/validation_accuracy",
        "results/transfer/sequential/test_accuracy",
    ):
        assert tag in tags

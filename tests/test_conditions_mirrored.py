"""Every frati2024 pretraining condition runs end to end on real Omniglot
with two replicas (MirroredStrategy over two logical CPU devices), as a
user runs it: `python -m zapkeras.train --strategy=mirrored`."""

import json
import os

import pytest

from tests.cli_utils import run_module
from tests.omniglot_layout import build_omniglot
from tests.omniglot_layout import needs_omniglot

TINY = [
    "--gin_param=WIDTH = 4",
    "--gin_param=PRETRAIN_CLASSES = 8",
    "--gin_param=PRETRAIN_EPOCHS = 2",
    "--gin_param=PRETRAIN_EPISODES = 4",
    "--gin_param=asb_pretraining.episodes_per_epoch = 2",
    "--gin_param=asb_pretraining.inner_steps = 3",
    "--gin_param=asb_pretraining.remember = 5",
    "--gin_param=TRANSFER_CLASSES = 4",
    "--gin_param=TRANSFER_RUNS = 1",
    "--gin_param=TRANSFER_LRS = (0.01,)",
    "--gin_param=sequential_transfer.eval_every = 2",
]
CONDITIONS = ["iid_zap", "asb_zap", "meta_asb_zap", "anml"]


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data"))
    build_omniglot(root)
    return root


@needs_omniglot
@pytest.mark.slow
@pytest.mark.parametrize("condition", CONDITIONS)
def test_condition_runs_on_two_replicas(condition, omniglot, tmp_path):
    out = str(tmp_path / "run")
    proc = run_module(
        "zapkeras.train",
        f"--gin_file=gin/omniglot/{condition}.gin",
        f"--data_dir={omniglot}",
        *TINY,
        "--strategy=mirrored",
        f"--output_dir={out}",
        env={"ZAPKERAS_CPU_DEVICES": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["replicas"] == 2
    assert results["pretrain"]["zap"] is True
    for protocol in ("sequential", "iid"):
        assert 0.0 <= results["transfer"][protocol]["test_accuracy"] <= 1.0

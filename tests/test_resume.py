"""A run killed with SIGKILL mid-epoch, mid-episode or mid-transfer and
started again with the same command finishes with the results.json of an
uninterrupted run (wall times aside)."""

import os
import signal

import pytest

from tests.cli_utils import SEQUENTIAL_ONLY
from tests.cli_utils import results_without_wall_time
from tests.cli_utils import run_module
from tests.cli_utils import run_module_until

COMMON = [
    "--gin_param=WIDTH = 4",
    "--gin_param=TRANSFER_CLASSES = 6",
    "--gin_param=TRANSFER_RUNS = 2",
    "--gin_param=TRANSFER_LRS = (0.01, 0.001)",
    "--gin_param=sequential_transfer.eval_every = 3",
]
IID = [
    "--gin_file=gin/quickstart.gin",
    "--gin_param=PRETRAIN_CLASSES = 12",
    "--gin_param=glyph_class_sets.evaluation_classes = 10",
    "--gin_param=PRETRAIN_EPOCHS = 3",
    "--gin_param=iid_pretraining.batch_size = 8",
    *COMMON,
]
ASB = [
    "--gin_file=gin/omniglot/asb_zap.gin",
    "--gin_param=load_class_sets.name = 'embedded'",
    "--gin_param=glyph_class_sets.background_classes = 12",
    "--gin_param=glyph_class_sets.evaluation_classes = 10",
    "--gin_param=PRETRAIN_CLASSES = None",
    "--gin_param=PRETRAIN_EPISODES = 30",
    "--gin_param=asb_pretraining.episodes_per_epoch = 10",
    "--gin_param=asb_pretraining.inner_steps = 3",
    "--gin_param=asb_pretraining.remember = 5",
    SEQUENTIAL_ONLY,
    *COMMON,
]
CASES = {
    "mid-epoch": (IID, "pretrain[iid] epoch 2/3"),
    "mid-transfer": (IID, "transfer/sequential[iid] lr 0.01 run 1/2"),
    "mid-episodes": (ASB, "pretrain[run] epoch 2/3"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_killed_run_resumes_to_the_uninterrupted_results(case, tmp_path):
    args, trigger = CASES[case]
    whole = str(tmp_path / "whole")
    proc = run_module("zapkeras.train", *args, f"--output_dir={whole}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cut = str(tmp_path / "cut")
    status = run_module_until(
        "zapkeras.train", *args, f"--output_dir={cut}", trigger=trigger
    )
    assert status == -signal.SIGKILL
    assert not os.path.exists(os.path.join(cut, "results.json"))
    proc = run_module("zapkeras.train", *args, f"--output_dir={cut}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results_without_wall_time(cut) == results_without_wall_time(whole)

"""Mistakes of type and shape, walked through the CLI: each exits 2 with one
message naming the binding, or the macro that set it, and no traceback or
results.json, across pretraining, transfer, continual problems, methods
and models (zapkeras.validate)."""

import os

import pytest

from tests.cli_utils import run_module
from tests.test_bad_inputs import EMBEDDED_ASB
from tests.test_bad_inputs import QUICK as QUICK_CONFIG
from tests.test_bad_inputs import TINY

QUICK = [QUICK_CONFIG, *TINY]


def _continual(config):
    return [
        f"--gin_file=gin/{config}.gin",
        "--gin_param=DATASET = 'embedded'",
        "--gin_param=continual_dataset.classes = 4",
        "--gin_param=TASKS = 1",
    ]


PERMUTED = _continual("permuted/base")
# (config arguments, the bad binding, text the message must contain)
CASES = {
    # The cases that used to end in a traceback.
    "width-string": (QUICK, "WIDTH = 'abc'", "WIDTH"),
    "epochs-float": (QUICK, "PRETRAIN_EPOCHS = 2.5", "PRETRAIN_EPOCHS"),
    "rates-scalar": (QUICK, "TRANSFER_LRS = 0.001", "TRANSFER_LRS"),
    "rates-strings": (QUICK, "TRANSFER_LRS = ['fast']", "TRANSFER_LRS"),
    "batch-float": (QUICK, "iid_pretraining.batch_size = 1e9", "batch_size"),
    "runs-string": (QUICK, "TRANSFER_RUNS = 'x'", "TRANSFER_RUNS"),
    "fraction-string": (QUICK, "Zapping.fraction = 'half'", "Zapping.fraction"),
    "image-size-none": (QUICK, "IMAGE_SIZE = None", "IMAGE_SIZE"),
    # Pretraining and transfer.
    "rate-string": (
        QUICK,
        "iid_pretraining.learning_rate = 'fast'",
        "iid_pretraining.learning_rate",
    ),
    "eval-every-float": (
        QUICK,
        "sequential_transfer.eval_every = 2.5",
        "eval_every",
    ),
    "classes-string": (QUICK, "TRANSFER_CLASSES = 'many'", "TRANSFER_CLASSES"),
    "width-tuple": (QUICK, "WIDTH = (8,)", "WIDTH"),
    "head-string": (
        QUICK,
        "TransferRunner.head_outputs = 'big'",
        "head_outputs",
    ),
    "zap-every-scalar": (QUICK, "Zapping.every = 1", "Zapping.every"),
    "inner-steps-float": (
        EMBEDDED_ASB,
        "asb_pretraining.inner_steps = 2.5",
        "inner_steps",
    ),
    "remember-string": (
        EMBEDDED_ASB,
        "asb_pretraining.remember = 'x'",
        "remember",
    ),
    "episodes-list": (
        EMBEDDED_ASB,
        "PRETRAIN_EPISODES = [1]",
        "PRETRAIN_EPISODES",
    ),
    # Continual problems and methods.
    "tasks-string": (PERMUTED, "TASKS = 'x'", "TASKS"),
    "continual-batch-float": (
        PERMUTED,
        "continual_learning.batch_size = 2.5",
        "continual_learning.batch_size",
    ),
    "schedule-number": (
        PERMUTED,
        "continual_learning.lr_schedule = 3",
        "lr_schedule",
    ),
    "layer-norm-number": (PERMUTED, "LAYER_NORM = 1", "LAYER_NORM"),
    "swr-factor-string": (
        _continual("permuted/swr"),
        "SelectiveWeightReinit.factor = 'small'",
        "SelectiveWeightReinit.factor",
    ),
    "swr-every-scalar": (
        _continual("permuted/swr"),
        "SelectiveWeightReinit.every = 2048",
        "SelectiveWeightReinit.every",
    ),
    "redo-threshold-string": (
        _continual("permuted/redo"),
        "ReDo.threshold = 'x'",
        "ReDo.threshold",
    ),
    "cbp-rate-list": (
        _continual("permuted/cbp"),
        "ContinualBackprop.replacement_rate = [0.1]",
        "ContinualBackprop.replacement_rate",
    ),
    "hare-momentum-string": (
        _continual("class_incremental/hare_tortoise"),
        "HareTortoise.momentum = 'high'",
        "HareTortoise.momentum",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_wrong_type_exits_2_naming_the_setting(case, tmp_path):
    config, binding, expected = CASES[case]
    out = str(tmp_path / "run")
    proc = run_module(
        "zapkeras.train",
        *config,
        f"--gin_param={binding}",
        f"--output_dir={out}",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expected in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not os.path.exists(os.path.join(out, "results.json"))

"""Every `gin/combos/` config runs end to end through `python -m
zapkeras.train`, shrunk to seconds, and every method in it acts: its
counters are > 0 in results.json and reach TensorBoard."""

import glob
import json
import os

import pytest

from tests.cli_utils import CONTINUAL_TINY
from tests.cli_utils import EMBEDDED_OMNIGLOT
from tests.cli_utils import REPO
from tests.cli_utils import SEQUENTIAL_ONLY
from tests.cli_utils import read_scalar_tags
from tests.cli_utils import run_module

ASB_TINY = [
    *EMBEDDED_OMNIGLOT,
    "--gin_param=PRETRAIN_EPISODES = 4",
    "--gin_param=asb_pretraining.episodes_per_epoch = 2",
    "--gin_param=asb_pretraining.inner_steps = 2",
    "--gin_param=asb_pretraining.remember = 3",
    SEQUENTIAL_ONLY,
]
SWR_OFTEN = ["--gin_param=SelectiveWeightReinit.every = (2, 'steps')"]
# {config: (tiny overrides, {counter: where it must be > 0})}; the counter
# names are results.json's '<method>/<counter>'.
COMBOS = {
    "asb_zap_swr": (
        [*ASB_TINY, *SWR_OFTEN],
        ("swr/resets", "swr/reinitialized"),
    ),
    "meta_asb_zap_hare_tortoise": (
        [*ASB_TINY, "--gin_param=HareTortoise.every = (1, 'epochs')"],
        ("hare_tortoise/resets",),
    ),
    "iid_zap_swr": (
        [
            *EMBEDDED_OMNIGLOT,
            *SWR_OFTEN,
            "--gin_param=PRETRAIN_EPOCHS = 2",
            "--gin_param=iid_pretraining.batch_size = 16",
            SEQUENTIAL_ONLY,
        ],
        ("zapping/resets", "swr/resets", "swr/reinitialized"),
    ),
    "permuted_swr_hare_tortoise": (
        [*CONTINUAL_TINY, *SWR_OFTEN],
        ("swr/resets", "hare_tortoise/resets"),
    ),
    "class_incremental_cbp_shrink_perturb": (
        [
            *CONTINUAL_TINY,
            "--gin_param=WIDTH = 12",
            "--gin_param=class_incremental_tasks.classes_first = 2",
            "--gin_param=class_incremental_tasks.classes_per_task = 2",
            "--gin_param=continual_learning.batch_size = 20",
            "--gin_param=ContinualBackprop.maturity_threshold = 1",
            "--gin_param=ContinualBackprop.replacement_rate = 0.5",
        ],
        ("cbp/replaced", "shrink_perturb/resets"),
    ),
}


def test_every_combo_config_is_exercised():
    shipped = glob.glob(os.path.join(REPO, "gin", "combos", "*.gin"))
    assert {os.path.basename(p)[:-4] for p in shipped} == set(COMBOS)


def _final(values):
    """A counter's value at the end of the run (the last task's)."""
    return values[-1] if isinstance(values, list) else values


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_combo_runs_and_every_method_acts(combo, tmp_path):
    overrides, counters = COMBOS[combo]
    out = str(tmp_path / "run")
    proc = run_module(
        "zapkeras.train",
        f"--gin_file=gin/combos/{combo}.gin",
        *overrides,
        f"--output_dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["experiment"] == f"combos/{combo}"
    if "continual" in results:
        found = results["continual"]["counters_per_task"]
    else:
        found = results["pretrain"]["counters"]
        assert results["transfer"]["sequential"]["test_accuracy"] >= 0.0
    for counter in counters:
        assert _final(found[counter]) > 0, (counter, found)
    tags = read_scalar_tags(os.path.join(out, "tensorboard"))
    missing = [c for c in counters if f"method/{c}" not in tags]
    assert not missing, sorted(tags)

"""The runners: every transfer protocol and every analysis starts from the
pretrained weights (restored, not shared), and `create_runner` picks the
runner the config asks for and refuses settings the other one owns."""

import functools

import numpy as np
import pytest
import tensorflow as tf

import gin
from tests.cli_utils import REPO
from zapkeras import cli
from zapkeras import data as data_lib
from zapkeras.errors import UsageError
from zapkeras.models import frati_convnet
from zapkeras.protocols import base as protocol_base
from zapkeras.protocols.transfer import SequentialTransfer
from zapkeras.runner import ContinualRunner
from zapkeras.runner import TransferRunner
from zapkeras.runner import create_runner


@pytest.fixture(autouse=True)
def _clear_gin():
    gin.clear_config()
    yield
    gin.clear_config()


class Pretrained(protocol_base.Protocol):
    """Sets the weights to seeded random values: the 'pretrained' ones."""

    def __call__(self, model, data, context):
        rng = np.random.default_rng(7)
        self.weights = [rng.normal(size=w.shape) for w in model.get_weights()]
        model.set_weights(self.weights)
        return {"val_accuracy": 0.0}


class Spy(protocol_base.Protocol):
    """Records the weights it starts from, then changes every one."""

    def __call__(self, model, data, context):
        self.seen = [w.copy() for w in model.get_weights()]
        for variable in model.weights:
            variable.assign(variable + 1.0)
        return {}


def _runner(tmp_path, **protocols):
    gin.bind_parameter("load_class_sets.name", "embedded")
    gin.bind_parameter("glyph_class_sets.background_classes", 6)
    gin.bind_parameter("glyph_class_sets.evaluation_classes", 5)
    return TransferRunner(
        str(tmp_path),
        None,
        0,
        tf.distribute.get_strategy(),
        "test",
        model_fn=functools.partial(frati_convnet, width=4),
        **protocols,
    )


def test_every_transfer_and_analysis_starts_from_the_pretrained_weights(
    tmp_path,
):
    pretrained, spies = Pretrained(), [Spy(), Spy(), Spy()]
    full_model = SequentialTransfer(
        learning_rates=(0.1,),
        runs=2,
        classes=3,
        train_per_class=4,
        eval_every=3,
        linear_probe=False,
    )
    runner = _runner(
        tmp_path,
        pretraining=pretrained,
        transfers={"full": full_model, "spy": spies[0], "spy_2": spies[1]},
        analyses={"spy": spies[2]},
    )
    results = runner.run()
    assert results["transfer"]["full"]["best_lr"] == 0.1
    for spy in spies:  # after a full-model transfer and after other spies
        assert len(spy.seen) == len(pretrained.weights)
        for got, want in zip(spy.seen, pretrained.weights):
            np.testing.assert_array_equal(got, want.astype(got.dtype))


def test_full_model_transfer_leaves_the_pretrained_weights(tmp_path):
    runner = _runner(tmp_path)
    model = runner.build_model(runner.model_fn, 6, (28, 28, 1))
    before = [w.copy() for w in model.get_weights()]
    pool = data_lib.load_class_sets(data_dir=None, seed=0).transfer
    SequentialTransfer(
        learning_rates=(0.1,),
        runs=1,
        classes=3,
        train_per_class=4,
        eval_every=3,
        linear_probe=False,
    )(model, protocol_base.Data(transfer=pool), runner.context())
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_create_runner_picks_the_configured_runner(tmp_path):
    args = (str(tmp_path), None, 0, tf.distribute.get_strategy(), "x")
    cli.parse_gin([f"{REPO}/gin/quickstart.gin"], [])
    assert type(create_runner(*args)) is TransferRunner
    gin.clear_config()
    cli.parse_gin([f"{REPO}/gin/permuted/base.gin"], [])
    assert type(create_runner(*args)) is ContinualRunner


def test_a_setting_of_the_other_runner_is_refused(tmp_path):
    args = (str(tmp_path), None, 0, tf.distribute.get_strategy(), "x")
    cli.parse_gin(
        [f"{REPO}/gin/permuted/base.gin"],
        ["TransferRunner.conditions = ('a',)"],
    )
    with pytest.raises(UsageError, match="TransferRunner.conditions"):
        create_runner(*args)
    gin.clear_config()
    cli.parse_gin(
        [f"{REPO}/gin/quickstart.gin"], ["create_runner.kind = 'batch'"]
    )
    with pytest.raises(UsageError, match="create_runner.kind"):
        create_runner(*args)

"""Gin wiring (Dopamine's gin_config_test pattern): every shipped config
parses with the real configurables, exposes the shared macros (README
"Configuration"), and binds what it claims to."""

import glob
import os

import pytest
import tensorflow as tf

import gin
from zapkeras import cli
from zapkeras import runner
from zapkeras.protocols import base as protocol_base

GIN_ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "gin")
EXPERIMENTS = sorted(
    p
    for p in glob.glob(os.path.join(GIN_ROOT, "**", "*.gin"), recursive=True)
    if os.sep + "parts" + os.sep not in p
)
FRATI_MACROS = (
    "WIDTH",
    "IMAGE_SIZE",
    "PRETRAIN_CLASSES",
    "PRETRAIN_EPOCHS",
    "PRETRAIN_EPISODES",
    "TRANSFER_CLASSES",
    "TRANSFER_LRS",
    "TRANSFER_RUNS",
)


@pytest.fixture(autouse=True)
def _clear_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_config_builds_its_runner_and_protocols(path, tmp_path):
    """Dopamine's wiring test: the config's runner and every protocol of
    every condition construct (and so validate) with the real bindings."""
    cli.parse_gin([path], [])
    strategy = tf.distribute.get_strategy()
    built = runner.create_runner(str(tmp_path), None, 0, strategy, "x")
    assert callable(built.model_fn)
    for protocols in built.protocols().values():
        assert protocols
        assert all(isinstance(p, protocol_base.Protocol) for p in protocols)
    assert not os.listdir(tmp_path)  # building writes nothing


CONTINUAL_MACROS = (
    "WIDTH",
    "DATASET",
    "TASKS",
    "EPOCHS_PER_TASK",
    "LAYER_NORM",
)


def _in(*folders):
    return [
        p
        for p in EXPERIMENTS
        if os.path.basename(os.path.dirname(p)) in folders
    ]


@pytest.mark.parametrize(
    "path",
    _in("omniglot", "mini_imagenet", "omni_image", "omni_image_vgg16"),
    ids=lambda p: os.path.relpath(p, GIN_ROOT),
)
def test_frati_configs_expose_spec_macros(path):
    cli.parse_gin([path], [])
    for macro in FRATI_MACROS:
        gin.query_parameter(f"%{macro}")


@pytest.mark.parametrize(
    "path",
    _in("permuted", "class_incremental", "warm_start"),
    ids=lambda p: os.path.relpath(p, GIN_ROOT),
)
def test_continual_configs_expose_spec_macros(path):
    cli.parse_gin([path], [])
    for macro in CONTINUAL_MACROS:
        gin.query_parameter(f"%{macro}")


def _bindings(path):
    gin.clear_config()
    cli.parse_gin([path], [])
    return set(gin.config_str().splitlines())


@pytest.mark.parametrize("path", _in("omni_image_vgg16"), ids=os.path.basename)
def test_vgg16_configs_are_the_omni_image_ones_with_vgg16(path):
    """frati2024 Fig. 6: only the model differs from the convnet config."""
    convnet = os.path.join(GIN_ROOT, "omni_image", os.path.basename(path))
    ours, theirs = _bindings(path), _bindings(convnet)
    assert theirs - ours == {"TransferRunner.model_fn = @frati_convnet"}
    assert ours - theirs == {
        "# Parameters for vgg16:",
        "TransferRunner.model_fn = @vgg16",
        "vgg16.style = 'frati'",
    }


def test_dataset_parts_override_the_method_defaults():
    cli.parse_gin([os.path.join(GIN_ROOT, "mini_imagenet", "meta_asb.gin")], [])
    assert gin.query_parameter("asb_pretraining.inner_learning_rate") == 1e-3
    assert gin.query_parameter("asb_pretraining.meta") is True
    assert gin.query_parameter("%PRETRAIN_EPISODES") == 25000
    assert gin.query_parameter("%IMAGE_SIZE") == 84


def test_bindings_override_files_and_macros_propagate():
    path = os.path.join(GIN_ROOT, "omniglot", "iid_zap.gin")
    cli.parse_gin([path], ["WIDTH = 8", "Zapping.every_n_epochs = 3"])
    assert gin.query_parameter("%WIDTH") == 8
    assert gin.query_parameter("Zapping.every_n_epochs") == 3
    assert gin.query_parameter("load_class_sets.name") == "omniglot"
    assert gin.query_parameter("TransferRunner.head_outputs") == 1000


def test_iid_config_has_no_zapping():
    cli.parse_gin([os.path.join(GIN_ROOT, "omniglot", "iid.gin")], [])
    with pytest.raises(ValueError):
        gin.query_parameter("iid_pretraining.zapping")


def test_quickstart_compares_zap_and_control():
    cli.parse_gin([os.path.join(GIN_ROOT, "quickstart.gin")], [])
    assert gin.query_parameter("TransferRunner.conditions") == (
        "iid",
        "iid_zap",
    )
    assert gin.query_parameter("load_class_sets.name") == "embedded"
    # Zapping every 3 epochs, the last zap 3 epochs before the end: the
    # zapped model relearns its head before it is measured.
    assert gin.query_parameter("Zapping.every") == (3, "epochs")
    epochs = gin.query_parameter("%PRETRAIN_EPOCHS")
    assert (epochs - 1) % 3 == 2

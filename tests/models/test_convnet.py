"""frati2024's small convnet: shapes, names, reference init, body/head
split (docs/reference_codes.md §1.5)."""

import keras
import numpy as np
import pytest

from zapkeras import models
from zapkeras.errors import UsageError


@pytest.fixture(scope="module")
def omniglot_net():
    keras.utils.set_random_seed(0)
    return models.frati_convnet(1000)


def test_omniglot_layout_and_2304_features(omniglot_net):
    names = [layer.name for layer in omniglot_net.layers]
    assert names == [
        "images",
        "conv0", "norm0", "relu0", "pool0",
        "conv1", "norm1", "relu1", "pool1",
        "conv2", "norm2", "relu2",
        "features", "classifier",
    ]  # fmt: skip
    assert omniglot_net.get_layer("features").output.shape == (None, 2304)
    assert omniglot_net.output.shape == (None, 1000)
    assert omniglot_net.get_layer("conv0").padding == "valid"
    assert isinstance(omniglot_net.get_layer("norm0"), models.InstanceNorm)


def test_84px_has_four_same_padded_blocks_and_6400_features():
    model = models.frati_convnet(64, image_size=84, channels=3)
    assert model.input.shape == (None, 84, 84, 3)
    assert model.get_layer("features").output.shape == (None, 6400)
    assert [x.name for x in model.layers if x.name.startswith("pool")] == [
        "pool0",
        "pool1",
        "pool2",
        "pool3",
    ]
    assert model.get_layer("conv3").padding == "same"


def test_reference_init_matches_pytorch(omniglot_net):
    head = omniglot_net.get_layer("classifier")
    bound = 1 / np.sqrt(2304)
    for values in (head.kernel.numpy(), head.bias.numpy()):
        assert np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.95 * bound  # uniform, not smaller
    conv = omniglot_net.get_layer("conv1")
    fan_in = 3 * 3 * 256
    kernel = conv.kernel.numpy()
    assert abs(kernel.std() / np.sqrt(2 / fan_in) - 1) < 0.01
    # Untruncated normal, like torch's kaiming_normal_.
    assert np.abs(kernel).max() > 3 * np.sqrt(2 / fan_in)
    bias = conv.bias.numpy()
    assert np.abs(bias).max() <= 1 / np.sqrt(fan_in) and bias.any()
    norm = omniglot_net.get_layer("norm1")
    assert np.all(norm.gamma.numpy() == 1) and not norm.beta.numpy().any()


def test_keras_init_keeps_keras_defaults():
    model = models.frati_convnet(5, width=8, init="keras")
    assert not model.get_layer("conv0").bias.numpy().any()
    assert not model.get_layer("classifier").bias.numpy().any()


def test_forward_pass_and_feature_extractor():
    model = models.frati_convnet(7, width=4)
    x = np.random.default_rng(0).random((3, 28, 28, 1), np.float32)
    body = models.feature_extractor(model)
    features = body(x).numpy()
    assert features.shape == (3, 36)
    head = model.get_layer("classifier")
    np.testing.assert_allclose(
        model(x).numpy(), head(features).numpy(), rtol=1e-5, atol=1e-6
    )
    assert body.layers[-1].name == "features"


def test_feature_extractor_needs_a_classifier():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(inputs))
    with pytest.raises(UsageError, match="classifier"):
        models.feature_extractor(model)


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"image_size": 32}, "frati_convnet.image_size"),
        ({"init": "xavier"}, "frati_convnet.init"),
        ({"width": 0}, "frati_convnet.width"),
    ],
)
def test_bad_settings_raise_usage_error(kwargs, setting):
    with pytest.raises(UsageError, match=setting):
        models.frati_convnet(10, **kwargs)

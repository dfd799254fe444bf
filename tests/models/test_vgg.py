"""VGG-16-BN: torchvision's feature stack, frati2024's adaptive 7×7 head
and H&T's flatten + MLP head; parameter counts and reference inits."""

import keras
import numpy as np
import pytest

from zapkeras import models
from zapkeras.errors import UsageError
from zapkeras.models.vgg import vgg16

# (in, out) channels of the 13 convs of vgg16_bn's cfg "D".
CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256)]
CONVS += [(256, 256), (256, 256), (256, 512)] + [(512, 512)] * 5
CONV_PARAMS = sum(9 * i * o + o for i, o in CONVS)  # weights + biases
BN_CHANNELS = sum(o for _, o in CONVS)


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _feature_weights(model):
    return [
        w
        for layer in model.layers
        if layer.name.startswith(("conv", "bn"))
        for w in layer.trainable_weights
    ]


@pytest.fixture(scope="module")
def frati():
    keras.utils.set_random_seed(0)
    return vgg16(64)


def test_features_match_torchvision_vgg16_bn(frati):
    assert CONV_PARAMS == 14_714_688 and BN_CHANNELS == 4224
    assert _count(_feature_weights(frati)) == 14_723_136
    assert _count(frati.non_trainable_weights) == 2 * BN_CHANNELS
    convs = [
        layer
        for layer in frati.layers
        if isinstance(layer, keras.layers.Conv2D)
    ]
    assert [(layer.kernel.shape[2], layer.filters) for layer in convs] == CONVS
    assert all(
        layer.kernel_size == (3, 3) and layer.use_bias for layer in convs
    )
    pools = [
        layer.name for layer in frati.layers if layer.name.startswith("pool")
    ]
    assert pools == [f"pool{g}" for g in range(5)]


def test_frati_head_upsamples_the_2x2_map_to_25088_features(frati):
    assert frati.get_layer("pool4").output.shape == (None, 2, 2, 512)
    assert frati.get_layer("adaptive_pool").output.shape == (None, 7, 7, 512)
    assert frati.get_layer("features").output.shape == (None, 25_088)
    assert frati.get_layer("classifier").kernel.shape == (25_088, 64)
    head = _count(frati.trainable_weights) - 14_723_136
    assert head == 25_088 * 64 + 64
    # PyTorch's bins for 2 → 7: rows 0–2 copy row 0, row 3 averages both,
    # rows 4–6 copy row 1 (same for columns).
    pooled = frati.get_layer("adaptive_pool")
    x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
    row = np.array([0, 0, 0, 0.5, 1, 1, 1], np.float32)
    expected = 2 * row[:, None] + row[None, :]
    np.testing.assert_allclose(pooled(x)[0, :, :, 0], expected, atol=1e-6)


def test_frati_reference_init_is_torchvision_vgg_init(frati):
    conv = frati.get_layer("conv3_1")  # 512 → 512
    kernel = conv.kernel.numpy()
    std = np.sqrt(2 / (9 * 512))  # kaiming_normal_, fan_out, relu
    assert abs(kernel.std() / std - 1) < 0.01
    assert np.abs(kernel).max() > 4 * std  # untruncated normal
    assert not conv.bias.numpy().any()
    bn = frati.get_layer("bn3_1")
    assert np.all(bn.gamma.numpy() == 1) and not bn.beta.numpy().any()
    assert bn.momentum == 0.9 and bn.epsilon == 1e-5
    head = frati.get_layer("classifier")
    bound = 1 / np.sqrt(25_088)
    for values in (head.kernel.numpy(), head.bias.numpy()):
        assert 0.9 * bound < np.abs(values).max() <= bound


def test_cifar_style_is_the_hare_tortoise_vgg():
    keras.utils.set_random_seed(0)
    model = vgg16(200, input_shape=(64, 64, 3), style="cifar")
    assert model.get_layer("features").output.shape == (None, 2048)
    assert [model.get_layer(f"head_dense{k}").units for k in (0, 1)] == [
        1024,
        1024,
    ]
    expected = (
        14_723_136 + 2048 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 200 + 200
    )
    assert _count(model.trainable_weights) == expected
    # PyTorch's default conv init: U(±1/√fan_in) for weights and biases.
    conv = model.get_layer("conv2_0")  # 128 → 256
    bound = 1 / np.sqrt(9 * 128)
    for values in (conv.kernel.numpy(), conv.bias.numpy()):
        assert 0.9 * bound < np.abs(values).max() <= bound
    assert abs(conv.kernel.numpy().std() / (bound / np.sqrt(3)) - 1) < 0.01
    small = vgg16(10, input_shape=(32, 32, 3), style="cifar", hidden=(16,))
    assert small.get_layer("features").output.shape == (None, 512)
    assert small.get_layer("classifier").kernel.shape == (16, 10)


def test_crelu_head_halves_each_hidden_layer():
    model = vgg16(
        10,
        input_shape=(32, 32, 3),
        style="cifar",
        hidden=(64, 32),
        head_activation="crelu",
    )
    assert model.get_layer("head_dense0").kernel.shape == (512, 32)
    assert model.get_layer("head_dense1").kernel.shape == (64, 16)
    assert model.get_layer("classifier").kernel.shape == (32, 10)
    assert isinstance(model.get_layer("head_act1"), models.layers.CReLU)


def test_without_batch_norm_is_plain_vgg16():
    model = vgg16(10, input_shape=(32, 32, 3), batch_norm=False)
    assert not any(
        isinstance(layer, keras.layers.BatchNormalization)
        for layer in model.layers
    )
    head = 25_088 * 10 + 10
    assert _count(model.trainable_weights) == CONV_PARAMS + head
    assert not model.non_trainable_weights


def test_forward_pass_and_feature_extractor():
    model = vgg16(7, input_shape=(32, 32, 3), style="cifar", hidden=(8,))
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    assert model(x).shape == (2, 7)
    assert models.feature_extractor(model)(x).shape == (2, 8)


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"style": "imagenet"}, "vgg16.style"),
        ({"input_shape": (28, 28, 1)}, "vgg16.input_shape"),
        ({"init": "torch"}, "vgg16.init"),
        ({"hidden": (7,), "head_activation": "crelu"}, "vgg16.hidden"),
    ],
)
def test_bad_settings_raise_usage_error(kwargs, setting):
    with pytest.raises(UsageError, match=setting):
        vgg16(10, **kwargs)

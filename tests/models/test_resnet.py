"""CIFAR ResNet-18 (H&T / kuangliu layout; berariu2021 §A.4 scaling):
PyTorch parameter counts, names, shortcuts, heads, padding and inits."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods
from zapkeras import models
from zapkeras.errors import UsageError
from zapkeras.models.resnet import resnet18


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _pytorch_counts(width, blocks, classes, channels=3):
    """(parameters, BN running statistics) of the PyTorch model, by hand:
    3×3 convs without bias, BN γ and β per channel, 1×1 projection + BN
    wherever the channels change, Linear(8·width, classes)."""
    params = 9 * channels * width + 2 * width  # stem conv + BN
    bn_channels = width
    in_ch = width
    for stage, count in enumerate(blocks):
        out = width * 2**stage
        for block in range(count):
            params += 9 * in_ch * out + 9 * out * out + 2 * (2 * out)
            bn_channels += 2 * out
            if in_ch != out:
                params += in_ch * out + 2 * out
                bn_channels += out
            in_ch = out
    params += in_ch * classes + classes
    return params, 2 * bn_channels


def test_cifar_resnet18_has_the_pytorch_parameter_count():
    model = resnet18(10)
    assert _pytorch_counts(64, (2, 2, 2, 2), 10) == (11_173_962, 9_600)
    assert _count(model.trainable_weights) == 11_173_962
    # BN moving mean and variance: 4800 channels.
    assert _count(model.non_trainable_weights) == 9_600
    assert model.output.shape == (None, 10)


@pytest.mark.parametrize(
    "width, blocks", [(16, (1, 1, 1, 1)), (8, (3, 1, 2, 1)), (4, (2, 2, 2, 2))]
)
def test_width_and_depth_scaling(width, blocks):
    model = resnet18(5, width=width, blocks=blocks)
    params, stats = _pytorch_counts(width, blocks, 5)
    assert _count(model.trainable_weights) == params
    assert _count(model.non_trainable_weights) == stats
    for stage, count in enumerate(blocks):
        convs = [
            layer.name
            for layer in model.layers
            if layer.name.startswith(f"stage{stage}_")
            and layer.name.endswith("_conv1")
        ]
        assert convs == [f"stage{stage}_block{j}_conv1" for j in range(count)]
        last = model.get_layer(f"stage{stage}_block{count - 1}_relu2")
        side = 32 // 2**stage
        assert last.output.shape == (None, side, side, width * 2**stage)
    assert model.get_layer("pool").output.shape == (None, 8 * width)


def test_projection_shortcuts_are_named_and_only_where_shapes_change():
    model = resnet18(10, width=4)
    shortcuts = [
        layer for layer in model.layers if layer.name.endswith("_shortcut")
    ]
    assert [layer.name for layer in shortcuts] == [
        "stage1_block0_shortcut",
        "stage2_block0_shortcut",
        "stage3_block0_shortcut",
    ]
    for layer in shortcuts:
        assert isinstance(layer, keras.layers.Conv2D)
        assert layer.kernel_size == (1, 1) and layer.strides == (1, 1)
        assert not layer.use_bias
        subsample = model.get_layer(layer.name.replace("shortcut", "subsample"))
        assert layer.input is subsample.output
        assert subsample.strides == (2, 2)
        bn = model.get_layer(f"{layer.name}_bn")
        assert isinstance(bn, keras.layers.BatchNormalization)
    # Every main-path conv is followed by its BN (for per-unit chains).
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            assert not layer.use_bias
            name = layer.name.replace("conv", "bn")
            if layer.name.endswith("_shortcut"):
                name = f"{layer.name}_bn"
            assert model.get_layer(name).input is layer.output


@pytest.mark.parametrize("side", [8, 7])
def test_projection_shortcut_is_pytorchs_stride_two_1x1_conv(side):
    """Subsample + 1×1 conv (resnet._subsample) gives PyTorch's stride-2 1×1
    conv and its gradients, on even and odd maps. The reference is numpy:
    TF's own strided 1×1 conv is what oneDNN gets wrong on narrow inputs
    (its weight gradient differs here at side 8 with oneDNN on)."""
    keras.utils.set_random_seed(2)
    model = resnet18(3, input_shape=(side, side, 3), width=2)
    conv = model.get_layer("stage1_block0_shortcut")
    start = model.get_layer("stage1_block0_subsample")
    sub = keras.Model(start.input, conv.output)
    x = np.random.default_rng(1).normal(size=(2, side, side, 2))
    x = tf.constant(x.astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        got = sub(x)
        weights = np.arange(got.shape.num_elements(), dtype="float32")
        weights = weights.reshape(got.shape) / 100.0
        loss = tf.reduce_sum(weights * got)
    kernel = conv.kernel.numpy()[0, 0]  # [in, out]
    sampled = x.numpy()[:, ::2, ::2, :]  # what PyTorch's strided conv reads
    assert got.shape == (2, (side + 1) // 2, (side + 1) // 2, 4)
    np.testing.assert_allclose(got, sampled @ kernel, rtol=1e-5, atol=1e-5)
    kernel_grad = np.einsum("bhwi,bhwo->io", sampled, weights)
    np.testing.assert_allclose(
        tape.gradient(loss, conv.kernel)[0, 0], kernel_grad, rtol=1e-4
    )
    x_grad = np.zeros(x.shape, "float32")
    x_grad[:, ::2, ::2, :] = weights @ kernel.T
    np.testing.assert_allclose(
        tape.gradient(loss, x), x_grad, rtol=1e-4, atol=1e-5
    )


def test_stride_two_convs_pad_one_pixel_on_every_side_like_pytorch():
    keras.utils.set_random_seed(1)
    model = resnet18(3, width=2, blocks=(1, 1, 1, 1))
    conv = model.get_layer("stage1_block0_conv1")
    sub = keras.Model(
        model.get_layer("stage0_block0_relu2").output, conv.output
    )
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 2)).astype("f4")
    expected = tf.nn.conv2d(
        x, conv.kernel, strides=2, padding=[[0, 0], [1, 1], [1, 1], [0, 0]]
    )
    np.testing.assert_allclose(sub(x), expected, rtol=1e-5, atol=1e-5)
    # Keras' asymmetric 'same' padding would give other values.
    same = tf.nn.conv2d(x, conv.kernel, strides=2, padding="SAME")
    assert np.abs(same - expected).max() > 0.1


def test_gap_mlp_head_is_the_hare_tortoise_gap_head():
    model = resnet18(100, width=8, head="gap_mlp")
    hidden = model.get_layer("head_dense")
    assert hidden.units == 64 and hidden.kernel.shape == (64, 64)
    assert model.get_layer("classifier").kernel.shape == (64, 100)
    linear = resnet18(100, width=8)
    extra = _count(model.trainable_weights) - _count(linear.trainable_weights)
    assert extra == 64 * 64 + 64
    x = np.zeros((2, 32, 32, 3), np.float32)
    assert models.feature_extractor(model)(x).shape == (2, 64)


def test_crelu_gap_head_halves_the_hidden_layer():
    model = resnet18(10, width=8, head="gap_mlp", head_activation="crelu")
    assert model.get_layer("head_dense").units == 32
    assert isinstance(model.get_layer("head_act"), models.layers.CReLU)
    assert model.get_layer("classifier").kernel.shape == (64, 10)


def test_reference_init_is_pytorch_default():
    keras.utils.set_random_seed(0)
    model = resnet18(10, width=16, head="gap_mlp")
    conv = model.get_layer("stage2_block1_conv2")
    bound = 1 / np.sqrt(9 * 64)
    kernel = conv.kernel.numpy()
    assert np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.99 * bound
    assert abs(kernel.std() / (bound / np.sqrt(3)) - 1) < 0.01
    shortcut = model.get_layer("stage3_block0_shortcut").kernel.numpy()
    assert abs(shortcut.std() / (1 / np.sqrt(64) / np.sqrt(3)) - 1) < 0.03
    head = model.get_layer("head_dense")
    for values in (head.kernel.numpy(), head.bias.numpy()):
        assert 0.9 / np.sqrt(128) < np.abs(values).max() <= 1 / np.sqrt(128)
    bn = model.get_layer("stage0_block0_bn1")
    assert np.all(bn.gamma.numpy() == 1) and not bn.beta.numpy().any()
    assert bn.momentum == 0.9 and bn.epsilon == 1e-5


def test_keras_init_keeps_keras_defaults():
    keras.utils.set_random_seed(0)
    model = resnet18(10, width=16, init="keras")
    kernel = model.get_layer("stage2_block1_conv2").kernel.numpy()
    glorot = np.sqrt(6 / (9 * 64 + 9 * 64))
    assert 0.99 * glorot < np.abs(kernel).max() <= glorot
    assert not model.get_layer("classifier").bias.numpy().any()


def test_same_seed_same_weights():
    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        weights.append(resnet18(4, width=2).get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"head": "mlp"}, "resnet18.head"),
        ({"blocks": (2, 2, 2)}, "resnet18.blocks"),
        ({"width": 0}, "resnet18.width"),
        ({"init": "he"}, "resnet18.init"),
        ({"head_activation": "crelu"}, "resnet18.head_activation"),
    ],
)
def test_bad_settings_raise_usage_error(kwargs, setting):
    with pytest.raises(UsageError, match=setting):
        resnet18(10, **kwargs)


def test_batch_norm_statistics_are_global_and_identical_on_replicas():
    """Two replicas keep one set of BN moving statistics, the one a single
    device computes from the same global batch (synchronised BN)."""
    x, y = step_methods.data(32, shape=(8, 8, 3), classes=4)

    def trained(strategy):
        model = step_methods.compiled(
            lambda: models.resnet18(4, width=2, input_shape=(8, 8, 3)),
            strategy,
        )
        step_methods.fit(model, [], x, y, batch_size=16)
        return model

    strategy = step_methods.mirrored()
    two = trained(strategy)
    one = trained(None)
    stats = [v for v in two.non_trainable_variables if "moving" in v.path]
    assert stats
    step_methods.replicas_agree(strategy, stats)
    for variable in stats:
        expected = next(v for v in one.weights if v.path == variable.path)
        np.testing.assert_allclose(
            variable.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5
        )

"""InstanceNorm and ReparamLayerNorm: statistics, exact second-order
gradients (Meta-ASB, docs/keras_notes.md §7) and serialisation;
CReLU; PyTorch's adaptive average pooling."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zapkeras.models import InstanceNorm
from zapkeras.models import ReparamLayerNorm
from zapkeras.models import layers


def test_instance_norm_standardises_each_example_and_channel():
    rng = np.random.default_rng(0)
    scale = np.array([0.1, 1.0, 30.0], np.float32)
    x = rng.normal(5.0, 1.0, (4, 6, 7, 3)).astype(np.float32) * scale
    y = InstanceNorm()(x).numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    # eps 1e-5 lowers the variance of the smallest channel (var 0.01).
    expected_var = x.var(axis=(1, 2)) / (x.var(axis=(1, 2)) + 1e-5)
    np.testing.assert_allclose(y.var(axis=(1, 2)), expected_var, rtol=1e-3)
    assert np.all(y.var(axis=(1, 2))[:, 2] > 0.999)


def test_instance_norm_affine_is_per_channel():
    layer = InstanceNorm()
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 2)).astype("float32")
    base = layer(x).numpy()
    layer.gamma.assign([2.0, 1.0])
    layer.beta.assign([0.0, -3.0])
    np.testing.assert_allclose(
        layer(x).numpy(), base * [2.0, 1.0] + [0.0, -3.0], rtol=1e-5, atol=1e-5
    )


def _hessian_vector_check(normalise):
    """Max error of d/dx <u, dL/dx>, L = sum(w · normalise(x)), vs central
    differences (float64): the Hessian-vector product a meta-gradient
    takes. (||dL/dx||² would not do: dL/dx ⟂ 1 hides the moments bug.)"""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 3, 2))
    w, u = (tf.constant(rng.normal(size=x.shape)) for _ in range(2))

    def f(x):
        with tf.GradientTape() as inner:
            inner.watch(x)
            loss = tf.reduce_sum(w * normalise(x))
        return tf.reduce_sum(u * inner.gradient(loss, x))

    x_t = tf.constant(x)
    with tf.GradientTape() as outer:
        outer.watch(x_t)
        value = f(x_t)
    analytic = outer.gradient(value, x_t).numpy()
    numeric = np.zeros_like(x)
    h = 1e-6
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = h
        numeric[i] = (f(x_t + step) - f(x_t - step)).numpy() / (2 * h)
    assert np.abs(numeric).max() > 0.1
    return np.abs(analytic - numeric).max()


def test_instance_norm_second_order_gradient_matches_finite_differences():
    layer = InstanceNorm(dtype="float64")
    layer.build((2, 3, 3, 2))
    layer.gamma.assign([1.5, -0.7])
    assert _hessian_vector_check(layer) < 1e-6


def test_second_order_check_catches_tf_nn_moments():
    """Control: tf.nn.moments (Keras' norms) stops a gradient and fails."""

    def moments_norm(x):
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-5)

    assert _hessian_vector_check(moments_norm) > 1e-2


def test_reparam_layer_norm_is_plain_normalisation_at_init():
    x = np.random.default_rng(3).normal(2.0, 3.0, (5, 16)).astype("float32")
    layer = ReparamLayerNorm()
    y = layer(x).numpy()
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(
        x.var(-1, keepdims=True) + 1e-6
    )
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    assert not layer.gamma.numpy().any() and not layer.beta.numpy().any()
    layer.gamma.assign(np.full(16, 1.0, np.float32))
    np.testing.assert_allclose(layer(x).numpy(), 2 * y, rtol=1e-5, atol=1e-5)


def test_layers_round_trip_through_keras_saving(tmp_path):
    inputs = keras.Input((4, 4, 3))
    x = InstanceNorm(epsilon=1e-3, name="inorm")(inputs)
    x = keras.layers.Flatten()(x)
    x = ReparamLayerNorm(name="rln")(x)
    outputs = layers.CReLU(name="crelu")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("inorm").gamma.assign([1.0, 2.0, 3.0])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("inorm"), InstanceNorm)
    assert loaded.get_layer("inorm").epsilon == 1e-3
    assert isinstance(loaded.get_layer("rln"), ReparamLayerNorm)
    assert isinstance(loaded.get_layer("crelu"), layers.CReLU)
    x = np.random.default_rng(4).normal(size=(2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


def test_crelu_concatenates_both_halves_along_features():
    x = np.array([[[1.5, -2.0, 0.0]], [[-0.5, 3.0, -1.0]]], np.float32)
    y = layers.CReLU()(x).numpy()
    assert y.shape == (2, 1, 6)
    np.testing.assert_array_equal(y[..., :3], np.maximum(x, 0))
    np.testing.assert_array_equal(y[..., 3:], np.maximum(-x, 0))
    # Either half determines x: relu(x) − relu(−x) = x.
    np.testing.assert_array_equal(y[..., :3] - y[..., 3:], x)


def _torch_bins(size, out):
    """PyTorch's adaptive-pooling bins, [⌊i·in/out⌋, ⌈(i+1)·in/out⌉)."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


POOLINGS = [((2, 2), (7, 7)), ((5, 7), (3, 3)), ((3, 4), (5, 2))]
POOLINGS += [((14, 14), (7, 7)), ((6, 1), (4, 3))]


@pytest.mark.parametrize("in_hw, out_hw", POOLINGS)
def test_adaptive_average_pooling_matches_pytorch_bins(in_hw, out_hw):
    """keras.layers.AdaptiveAveragePooling2D (used by vgg16) is PyTorch's
    AdaptiveAvgPool2d, also when it upsamples (in < out)."""
    x = np.random.default_rng(5).normal(size=(2, *in_hw, 3)).astype("f4")
    rows, cols = (_torch_bins(i, o) for i, o in zip(in_hw, out_hw))
    expected = np.stack(
        [
            np.stack([x[:, r0:r1, c0:c1].mean((1, 2)) for c0, c1 in cols], 1)
            for r0, r1 in rows
        ],
        1,
    )
    y = keras.layers.AdaptiveAveragePooling2D(out_hw)(x)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_pytorch_bins_by_hand():
    assert _torch_bins(2, 7) == [(0, 1)] * 3 + [(0, 2)] + [(1, 2)] * 3
    assert _torch_bins(5, 3) == [(0, 2), (1, 4), (3, 5)]

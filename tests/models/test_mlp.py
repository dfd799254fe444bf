"""The continual-problem MLP and its LayerNorm variants
(hernandez-garcia2025 §4–5)."""

import keras
import numpy as np
import pytest

from zapkeras import models
from zapkeras.errors import UsageError


def _layer_types(model):
    return [type(layer).__name__ for layer in model.layers[2:]]


@pytest.mark.parametrize(
    "layer_norm, block",
    [
        (None, ["Dense", "Activation"]),
        ("pre", ["Dense", "LayerNormalization", "Activation"]),
        ("post", ["Dense", "Activation", "LayerNormalization"]),
        ("reparam", ["Dense", "ReparamLayerNorm", "Activation"]),
    ],
)
def test_layer_norm_placement(layer_norm, block):
    model = models.mlp(
        10, input_shape=(28, 28), width=32, depth=3, layer_norm=layer_norm
    )
    assert _layer_types(model) == block * 3 + ["Dense"]
    assert model.layers[-1].name == "classifier"
    assert [model.get_layer(f"dense{i}").units for i in range(3)] == [32] * 3
    if layer_norm:
        assert model.get_layer("norm2").epsilon == (
            1e-6 if layer_norm == "reparam" else 1e-5
        )
    x = np.random.default_rng(0).random((4, 28, 28), np.float32)
    assert model(x).shape == (4, 10)
    features = models.feature_extractor(model)(x)
    assert features.shape == (4, 32)


def test_post_norm_output_is_normalised():
    model = models.mlp(3, input_shape=(8,), width=64, layer_norm="post")
    x = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    h = models.feature_extractor(model)(x).numpy()
    np.testing.assert_allclose(h.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(h.std(-1), 1, rtol=1e-3)


def test_reference_init_is_kaiming_normal_with_zero_bias():
    keras.utils.set_random_seed(0)
    model = models.mlp(10, input_shape=(784,), width=512, depth=1)
    dense = model.get_layer("dense0")
    assert abs(dense.kernel.numpy().std() / np.sqrt(2 / 784) - 1) < 0.01
    assert not dense.bias.numpy().any()
    assert not model.get_layer("classifier").bias.numpy().any()


def test_bad_layer_norm_names_the_setting():
    with pytest.raises(UsageError, match="mlp.layer_norm"):
        models.mlp(10, input_shape=(4,), layer_norm="batch")


def test_crelu_halves_each_hidden_layer_and_doubles_the_next_fan_in():
    keras.utils.set_random_seed(0)
    model = models.mlp(
        10, input_shape=(12,), width=32, depth=2, activation="crelu"
    )
    assert model.get_layer("dense0").kernel.shape == (12, 16)
    assert model.get_layer("dense1").kernel.shape == (32, 16)
    assert model.get_layer("classifier").kernel.shape == (32, 10)
    # Kaiming-normal on the doubled fan-in of dense1.
    std = model.get_layer("dense1").kernel.numpy().std()
    assert abs(std / np.sqrt(2 / 32) - 1) < 0.2
    x = np.random.default_rng(2).normal(size=(4, 12)).astype(np.float32)
    pre = keras.Model(model.input, model.get_layer("dense1").output)(x)
    act = keras.Model(model.input, model.get_layer("act1").output)(x)
    np.testing.assert_array_equal(
        act, np.concatenate([np.maximum(pre, 0), np.maximum(-pre, 0)], -1)
    )


def test_crelu_with_layer_norm_before_and_after():
    def build(layer_norm):
        return models.mlp(
            3,
            input_shape=(8,),
            width=16,
            activation="crelu",
            layer_norm=layer_norm,
        )

    # Pre-activation norms see the 8 units, post-activation ones the 16.
    assert build("pre").get_layer("norm0").output.shape == (None, 8)
    assert build("post").get_layer("norm0").output.shape == (None, 16)


def test_crelu_needs_an_even_width():
    with pytest.raises(UsageError, match="WIDTH = 5"):
        models.mlp(10, input_shape=(4,), width=5, activation="crelu")

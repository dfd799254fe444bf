"""Initial distributions read off the layers' initializers, overrides, and
fresh (non-repeating, seeded) draws with the right moments."""

import math

import keras
import numpy as np
import pytest

from zapkeras import models
from zapkeras.errors import UsageError
from zapkeras.methods import inits
from zapkeras.models import layers as zlayers

D = inits.Distribution


def _model():
    inputs = keras.Input((64,))
    x = keras.layers.Dense(
        32, kernel_initializer=zlayers.kaiming_normal(), name="kaiming"
    )(inputs)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = zlayers.ReparamLayerNorm(name="reparam")(x)
    x = keras.layers.Dense(
        16,
        kernel_initializer="glorot_uniform",
        bias_initializer=zlayers.torch_uniform(32),
        name="glorot",
    )(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(
        8,
        kernel_initializer=keras.initializers.TruncatedNormal(0.1, 0.2),
        bias_initializer=keras.initializers.Constant(0.5),
        name="truncated",
    )(x)
    outputs = keras.layers.Dense(
        4,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.3),
        name="classifier",
    )(x)
    return keras.Model(inputs, outputs)


def test_distributions_follow_the_layers():
    model = _model()
    found = inits.distributions(model, model.weights)
    assert found == {
        "kaiming/kernel": D("normal", 0.0, pytest.approx(math.sqrt(2 / 64))),
        "kaiming/bias": D("constant", 0.0, 0.0),
        "ln/gamma": D("constant", 1.0, 0.0),
        "ln/beta": D("constant", 0.0, 0.0),
        "reparam/gamma": D("constant", 0.0, 0.0),
        "reparam/beta": D("constant", 0.0, 0.0),
        "glorot/kernel": D("uniform", 0.0, pytest.approx(math.sqrt(6 / 48))),
        "glorot/bias": D("uniform", 0.0, pytest.approx(1 / math.sqrt(32))),
        "bn/gamma": D("constant", 1.0, 0.0),
        "bn/beta": D("constant", 0.0, 0.0),
        "bn/moving_mean": D("constant", 0.0, 0.0),
        "bn/moving_variance": D("constant", 1.0, 0.0),
        "truncated/kernel": D("truncated_normal", 0.1, 0.2),
        "truncated/bias": D("constant", 0.5, 0.0),
        "classifier/kernel": D("normal", 0.0, 0.3),
        "classifier/bias": D("constant", 0.0, 0.0),
    }


def test_conv_and_he_uniform_fans():
    conv = keras.layers.Conv2D(
        8, 3, kernel_initializer="he_uniform", name="conv"
    )
    inputs = keras.Input((5, 5, 4))
    model = keras.Model(inputs, conv(inputs))
    found = inits.of_variable(model, conv.kernel)
    assert found == D("uniform", 0.0, pytest.approx(math.sqrt(6 / 36)))


def test_override_and_unknown_initializer():
    inputs = keras.Input((4,))
    layer = keras.layers.Dense(4, kernel_initializer="orthogonal", name="o")
    model = keras.Model(inputs, layer(inputs))
    with pytest.raises(UsageError, match=r"'o/kernel'.*Orthogonal.*SWR"):
        inits.distributions(model, model.weights, setting="SWR")
    found = inits.distributions(
        model, model.weights, {"o/kernel": ("normal", 0, 0.5)}
    )
    assert found["o/kernel"] == D("normal", 0.0, 0.5)
    with pytest.raises(UsageError, match="kind"):
        inits.distributions(
            model, model.weights, {"o/kernel": ("cauchy", 0, 1)}
        )
    with pytest.raises(UsageError, match="not variables"):
        inits.distributions(
            model, model.weights, {"x/kernel": ("normal", 0, 1)}
        )


@pytest.mark.parametrize(
    "distribution, mean, std",
    [
        (D("normal", 0.5, 0.2), 0.5, 0.2),
        (D("uniform", -1.0, 0.3), -1.0, 0.3 / math.sqrt(3)),
        (D("truncated_normal", 0.0, 1.0), 0.0, 0.8796),
        (D("constant", 1.0, 0.0), 1.0, 0.0),
    ],
)
def test_sample_moments_and_seeding(distribution, mean, std):
    generator = keras.random.SeedGenerator(3)
    first = np.asarray(
        inits.sample(distribution, (200, 100), "float32", generator)
    )
    assert abs(first.mean() - mean) <= 4 * std / np.sqrt(first.size) + 1e-6
    assert abs(first.std() - std) <= 0.02 * std
    if distribution.kind == "truncated_normal":
        assert np.abs(first).max() <= 2.0
    second = inits.sample(distribution, (200, 100), "float32", generator)
    assert std == 0 or not np.array_equal(first, second)  # no repeats
    again = inits.sample(
        distribution, (200, 100), "float32", keras.random.SeedGenerator(3)
    )
    np.testing.assert_array_equal(first, again)


def test_every_vit_variable_has_a_known_distribution():
    """SWR resamples ViT token and position embeddings from their init."""
    model = models.vit(
        3, image_size=8, patch_size=4, dim=12, depth=1, heads=2, mlp_dim=8
    )
    found = inits.distributions(model, model.trainable_variables)
    assert set(found) == {v.path for v in model.trainable_variables}
    assert found["embedding/position_embedding"] is not None

"""Zap-divergence (frati2025 §2.2): identical copies stay at similarity 1;
a zap lowers only the classifier's similarity at first."""

import keras
import numpy as np

from zapkeras import data as data_lib
from zapkeras.protocols import zap_divergence


def _setup():
    rng = np.random.default_rng(0)
    train = data_lib.LabeledImages(
        images=rng.random((60, 6, 6, 1)).astype(np.float32),
        labels=np.repeat(np.arange(6), 10).astype(np.int32),
        class_names=tuple("abcdef"),
    )
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, name="conv0")(inputs)
    x = keras.layers.Flatten(name="features")(x)
    model = keras.Model(inputs, keras.layers.Dense(6, name="classifier")(x))
    return model, data_lib.iid_batches(train, 10, seed=0)


def test_unperturbed_copy_stays_at_similarity_one():
    model, batches = _setup()
    names, sims = zap_divergence.divergence(
        model, batches, 8, 1e-2, keras.optimizers.Adam, perturb=False, seed=0
    )
    assert names == ["conv0", "classifier"]
    assert sims.shape == (2, 8)
    np.testing.assert_allclose(sims, 1.0, atol=1e-6)


def test_zap_perturbs_the_classifier_then_spreads_to_the_body():
    model, batches = _setup()
    _, sims = zap_divergence.divergence(
        model, batches, 8, 1e-2, keras.optimizers.Adam, perturb=True, seed=0
    )
    conv, head = sims
    assert head[0] < 0.9  # a fresh Kaiming head is far from the trained one
    assert conv[0] > 0.99  # one step in, the body has barely moved apart
    assert conv[-1] < conv[0]  # the copies' bodies then drift apart

"""zapkeras.losses.per_example_cross_entropy: one unscaled value per
example, also inside a MirroredStrategy replica (where a Keras Loss object
divides by the number of replicas)."""

import keras
import numpy as np
import tensorflow as tf

from tests.conftest import MIRRORED_DEVICES
from zapkeras import distribute
from zapkeras.losses import per_example_cross_entropy


def _hand(y, logits):
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -log_p[np.arange(len(y)), y]


def test_matches_the_formula_per_example():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    y = np.array([0, 3, 1, 1, 2])
    got = per_example_cross_entropy(y, logits)
    assert tuple(got.shape) == (5,)
    np.testing.assert_allclose(got, _hand(y, logits), rtol=1e-5)


def test_is_not_scaled_by_the_replicas():
    strategy = distribute.mirrored(tuple(MIRRORED_DEVICES))
    y = tf.constant([1, 0])
    logits = tf.constant([[0.0, 2.0], [1.0, -1.0]])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step():
        ours = keras.ops.mean(per_example_cross_entropy(y, logits))
        return ours, loss(y, logits)

    ours, keras_loss = strategy.run(step)
    ours = strategy.experimental_local_results(ours)[0]
    keras_loss = strategy.experimental_local_results(keras_loss)[0]
    want = _hand(y.numpy(), logits.numpy()).mean()
    np.testing.assert_allclose(ours, want, rtol=1e-5)
    np.testing.assert_allclose(keras_loss, want / 2, rtol=1e-5)

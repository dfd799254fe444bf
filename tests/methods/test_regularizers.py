"""Regularizers (lee2024 App. A.4): Keras' weight decay is decoupled,
RegenerativeL2 decays toward θ_0 after each step (every weight, or the two
tensors the H&T repo's term reaches), SpectralDecoupling's value and
gradient match the hand formula, its replica scaling is right, and the
continual protocol adds its penalty to the masked cross-entropy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods
from zapkeras import models
from zapkeras.errors import UsageError
from zapkeras.methods.regularizers import RegenerativeL2
from zapkeras.methods.regularizers import SpectralDecoupling
from zapkeras.protocols import continual
from zapkeras.protocols import task_training


def _data(n=32, features=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    return x, rng.integers(0, classes, n)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_keras_weight_decay_is_decoupled(momentum):
    # p ← p·(1 − lr·wd), then the SGD step; with momentum the decay stays
    # out of the velocity (coupled L2 would give 1.43 at the second step).
    optimizer = keras.optimizers.SGD(0.1, momentum=momentum, weight_decay=0.5)
    variable = keras.Variable([2.0])
    optimizer.apply_gradients([(tf.constant([1.0]), variable)])
    np.testing.assert_allclose(variable.numpy(), [1.8], rtol=1e-6)
    optimizer.apply_gradients([(tf.constant([1.0]), variable)])
    velocity = momentum * -0.1 - 0.1
    expected = 1.8 * (1 - 0.1 * 0.5) + velocity
    np.testing.assert_allclose(variable.numpy(), [expected], rtol=1e-6)


class _Weights(keras.callbacks.Callback):
    """Weights after the optimizer step, before RegenerativeL2 acts."""

    def on_train_batch_end(self, batch, logs=None):
        self.values = [v.numpy().copy() for v in self.model.weights]


def test_regenerative_l2_decays_toward_the_initial_weights():
    keras.utils.set_random_seed(0)
    model = models.mlp(4, input_shape=(6,), width=8, depth=1)
    initial = model.get_weights()
    recorder = _Weights()
    x, y = _data(8)
    regen = RegenerativeL2(0.5)
    for lr in (0.1, 0.2):  # a new optimizer per task: its rate is used
        model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
        onehot = np.eye(4, dtype=np.float32)[y]
        model.fit(x, onehot, callbacks=[recorder, regen], verbose=0)
        factor = np.float32(0.5) * np.float32(lr)
        for variable, stepped, start in zip(
            model.weights, recorder.values, initial
        ):
            expected = (np.float32(1) - factor) * stepped + factor * start
            np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6)
            assert not np.allclose(stepped, start)


def _changed_by_regenerative_l2(model, **kwargs):
    """Paths of the weights RegenerativeL2 moved after the step."""
    recorder = _Weights()
    x, y = _data(8)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    onehot = np.eye(4, dtype=np.float32)[y]
    regen = RegenerativeL2(0.5, **kwargs)
    model.fit(x, onehot, callbacks=[recorder, regen], verbose=0)
    return [
        variable.path
        for variable, stepped in zip(model.weights, recorder.values)
        if not np.array_equal(variable.numpy(), stepped)
    ]


def test_regenerative_l2_reference_coverage_is_two_tensors():
    # The H&T repo's term: its loops keep only the last body and the last
    # head parameter (docs/reference_codes.md §3.2).
    keras.utils.set_random_seed(0)
    model = models.mlp(4, input_shape=(6,), width=8, depth=2)
    everything = [v.path for v in model.trainable_variables]
    assert _changed_by_regenerative_l2(model) == everything
    keras.utils.set_random_seed(0)
    model = models.mlp(4, input_shape=(6,), width=8, depth=2)
    assert _changed_by_regenerative_l2(model, reference_coverage=True) == [
        "dense1/bias",
        "classifier/bias",
    ]
    keras.utils.set_random_seed(0)
    model = models.mlp(4, input_shape=(6,), width=8, depth=2)
    head = ["dense1", "classifier"]
    assert _changed_by_regenerative_l2(
        model, reference_coverage=True, head=head
    ) == ["dense0/bias", "classifier/bias"]
    with pytest.raises(UsageError, match="RegenerativeL2.head"):
        _changed_by_regenerative_l2(
            model, reference_coverage=True, head="missing"
        )


def test_regenerative_l2_zero_strength_changes_nothing():
    keras.utils.set_random_seed(0)
    model = models.mlp(4, input_shape=(6,), width=8, depth=1)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    recorder = _Weights()
    x, _ = _data(8)
    model.fit(
        x, np.zeros((8, 4)), callbacks=[recorder, RegenerativeL2(0)], verbose=0
    )
    for variable, stepped in zip(model.weights, recorder.values):
        np.testing.assert_array_equal(variable.numpy(), stepped)
    with pytest.raises(UsageError, match="RegenerativeL2.strength"):
        RegenerativeL2(-1)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_spectral_decoupling_value_and_gradient(form):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 3)).astype(np.float32) * 3
    labels = np.array([0, 2, 1, 1, 0])
    lam = 0.3
    loss = SpectralDecoupling(lam, form=form)
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(labels, z)
    gradient = tape.gradient(value, z).numpy()
    p = _softmax(logits.astype(np.float64))
    ce = -np.log(p[np.arange(5), labels])
    if form == "paper":
        penalty, dpenalty = lam / 2 * (logits**2).sum(-1), lam * logits
    else:
        penalty, dpenalty = lam * (logits**2).mean(-1), 2 * lam / 3 * logits
    np.testing.assert_allclose(value.numpy(), (ce + penalty).mean(), rtol=1e-5)
    onehot = np.eye(3)[labels]
    expected = (p - onehot + dpenalty) / 5
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)


def test_spectral_decoupling_serializes_and_validates():
    loss = SpectralDecoupling(0.1, form="reference")
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (type(again), again.lam, again.form) == (
        SpectralDecoupling,
        0.1,
        "reference",
    )
    with pytest.raises(UsageError, match="SpectralDecoupling.lam"):
        SpectralDecoupling(-1.0)
    with pytest.raises(UsageError, match="SpectralDecoupling.form"):
        SpectralDecoupling(0.1, form="pytorch")


def test_logit_penalty_adds_to_the_masked_cross_entropy():
    """continual_learning.logit_penalty: CE over the seen classes plus the
    penalty of all the logits; the compiled loss survives get_config."""
    seen = task_training.SeenClasses(4)
    seen.count.assign(2)
    x, y = _data(classes=2)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    lam = 0.3
    seen.compile(model, "sgd", penalty=SpectralDecoupling(lam, "reference"))
    loss = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    z = model.predict(x, verbose=0).astype(np.float64)
    p = _softmax(z[:, :2])
    ce = -np.log(p[np.arange(len(y)), y])
    expected = (ce + lam * (z**2).mean(-1)).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    config = model.loss.get_config()
    again = task_training.MaskedCrossEntropy.from_config(config)
    np.testing.assert_allclose(again(y, z), expected, rtol=1e-5)
    with pytest.raises(UsageError, match="logit_penalty"):
        continual.ContinualLearning(problem=None, logit_penalty="sd")


def test_one_vs_two_replicas_spectral_loss_and_regenerative_l2():
    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = models.mlp(4, input_shape=(6,), width=8, depth=1)
            model.compile(
                optimizer=keras.optimizers.SGD(0.5), loss=SpectralDecoupling(1)
            )
        x, y = _data()
        history = model.fit(
            x,
            y,
            batch_size=16,
            epochs=2,
            shuffle=False,
            callbacks=[RegenerativeL2(0.1)],
            verbose=0,
        )
        return model, history.history["loss"]

    one, one_loss = run(tf.distribute.get_strategy())
    two, two_loss = run(step_methods.mirrored())
    np.testing.assert_allclose(one_loss, two_loss, rtol=1e-5)
    for a, b in zip(one.weights, two.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)

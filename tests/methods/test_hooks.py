"""The step hook: Keras' own train step, plus global gradients and
activations for observers; state for checkpoints; usage errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods as sm
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.methods import hooks


class Recorder(base.Method):
    """Stores what it observes: a step count, the global gradients, the
    global mean activation of `layer` and the weights it sees."""

    def __init__(self, layer=None, gradients=False):
        super().__init__(seed=None)
        self.layer_name = layer
        self.gradients_needed = gradients

    def build(self, model):
        self.observed_steps = self.add_state("observed", 0.0)
        self.variables = model.trainable_variables
        self.seen = [
            self.add_state(v.path, tf.zeros(v.shape)) for v in self.variables
        ]
        self.grads = [
            self.add_state(f"grad/{v.path}", tf.zeros(v.shape))
            for v in self.variables
        ]
        if self.layer_name:
            layer = model.get_layer(self.layer_name)
            self.observed = [layer]
            self.mean = self.add_state("mean", tf.zeros(layer.output.shape[-1]))

    def observe(self, step):
        targets = [self.observed_steps] + self.seen
        values = [self.observed_steps + 1.0]
        values += [tf.convert_to_tensor(v) for v in step.variables]
        if self.gradients_needed:
            targets += self.grads
            values += step.gradients
        if self.layer_name:
            targets.append(self.mean)
            values += hooks.global_unit_means(
                [step.activations[self.layer_name]]
            )
        hooks.assign_all(targets, values)


def test_hooked_step_is_bit_identical_to_keras_train_step():
    x, y = sm.data()
    plain, hooked = sm.mlp(), sm.mlp()
    recorder = Recorder()
    recorder.gradients_needed = False
    history = [sm.fit(plain, [], x, y, epochs=2)]
    hooks.install(hooked, recorder)  # nothing asked for: only the counter
    history.append(sm.fit(hooked, [recorder], x, y, epochs=2))
    assert "train_step" in hooked.__dict__
    assert hooks.observers(hooked) == [recorder]
    assert recorder.observed_steps.numpy() == 8
    for path, value in sm.weights(plain).items():
        np.testing.assert_array_equal(value, sm.weights(hooked)[path])
    for name, value in sm.slots(plain).items():
        np.testing.assert_array_equal(value, sm.slots(hooked)[name])
    assert history[0].history == history[1].history


@pytest.mark.parametrize("replicas", [1, 2])
def test_observers_get_global_gradients_activations_and_new_weights(replicas):
    strategy = sm.mirrored() if replicas == 2 else tf.distribute.get_strategy()
    x, y = sm.data(n=16)
    model = sm.mlp(strategy)
    before = sm.weights(model)
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(
                y, logits, from_logits=True
            )
        )
    expected = tape.gradient(loss, model.trainable_variables)
    act1 = keras.Model(model.input, model.get_layer("act1").output)(x)
    recorder = Recorder("act1", gradients=True)
    sm.fit(model, [recorder], x, y)  # one step on the whole batch
    assert not np.array_equal(
        before["dense0/kernel"], sm.weights(model)["dense0/kernel"]
    )
    for variable, seen, grad, want in zip(
        model.trainable_variables, recorder.seen, recorder.grads, expected
    ):
        np.testing.assert_array_equal(seen.numpy(), variable.numpy())
        np.testing.assert_allclose(grad.numpy(), want.numpy(), atol=1e-6)
    np.testing.assert_allclose(
        recorder.mean.numpy(), np.mean(act1, axis=0), atol=1e-6
    )
    if replicas == 2:
        sm.replicas_agree(strategy, recorder.checkpoint_items().values())


def test_observers_compose_install_is_idempotent_and_uninstall_restores():
    x, y = sm.data(n=32)
    model = sm.mlp()
    first, second = Recorder("act0"), Recorder("act1", gradients=True)
    sm.fit(model, [first, second], x, y)
    hooks.install(model, first)
    assert hooks.observers(model) == [first, second]
    sm.fit(model, [first, second], x, y)
    assert first.observed_steps.numpy() == second.observed_steps.numpy() == 4
    assert first.steps.numpy() == 4  # state kept across fits
    hooks.uninstall(model, first)
    hooks.uninstall(model, second)
    assert "train_step" not in model.__dict__
    assert hooks.observers(model) == []
    sm.fit(model, [], x, y)  # Keras' own step again
    assert first.observed_steps.numpy() == 4


def test_sequential_model_and_conv_activations():
    model = sm.compiled(
        lambda: keras.Sequential(
            [
                keras.Input((6, 6, 2)),
                keras.layers.Conv2D(3, 3, name="conv"),
                keras.layers.ReLU(name="relu"),
                keras.layers.Flatten(),
                keras.layers.Dense(4, name="classifier"),
            ]
        )
    )
    x = np.random.default_rng(1).normal(size=(8, 6, 6, 2)).astype(np.float32)
    y = np.arange(8) % 4
    relu = keras.Model(model.inputs[0], model.get_layer("relu").output)(x)
    recorder = Recorder("relu")
    sm.fit(model, [recorder], x, y, batch_size=8)
    np.testing.assert_allclose(
        recorder.mean.numpy(), np.mean(relu, axis=(0, 1, 2)), atol=1e-6
    )


def test_checkpoint_items_restore_method_state(tmp_path):
    x, y = sm.data(n=32)
    model = sm.mlp()
    recorder = Recorder("act0")
    sm.fit(model, [recorder], x, y)
    items = recorder.checkpoint_items()
    path = tf.train.Checkpoint(**items).save(str(tmp_path / "ckpt"))
    saved = {k: v.numpy().copy() for k, v in items.items()}
    sm.fit(model, [recorder], x, y)
    tf.train.Checkpoint(**items).restore(path).assert_consumed()
    for key, value in saved.items():
        np.testing.assert_array_equal(items[key].numpy(), value)


def test_usage_errors():
    model = sm.compiled(
        lambda: keras.Sequential([keras.layers.Dense(2, name="classifier")])
    )
    with pytest.raises(UsageError, match="not built"):
        Recorder().set_model(model)
    model = sm.mlp()
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=2,
    )
    with pytest.raises(UsageError, match="steps_per_execution=1"):
        sm.fit(model, [Recorder(gradients=True)], *sm.data(n=32))
    with pytest.raises(UsageError, match="seed"):
        base.Method(seed=-1)
    with pytest.raises(UsageError, match="set_model"):
        Recorder().checkpoint_items()

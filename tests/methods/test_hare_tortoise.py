"""Hare & Tortoise and self-distillation (lee2024 §4; H&T repo §3.1): the
tortoise is the exact EMA of the hare's weights and BatchNorm statistics,
the hare becomes the tortoise only at the reset epochs, optimizer slots
survive a reset, the tortoise checkpoints and evaluates, the distillation
loss is CE + KL by hand, and mirrored replicas agree."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods
from zapkeras import models
from zapkeras.errors import UsageError
from zapkeras.methods.hare_tortoise import HareTortoise
from zapkeras.methods.hare_tortoise import SelfDistillation

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=32, features=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    return x, rng.integers(0, classes, n)


def _bn_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, name="dense0")(inputs)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.ReLU()(x)
    outputs = keras.layers.Dense(4, name="classifier")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=LOSS, metrics=["accuracy"]
    )
    return model


def _values(variables):
    return [v.numpy().copy() for v in variables]


class _Recorder(keras.callbacks.Callback):
    """Hare weights after each step; hare, tortoise and slots per epoch."""

    def __init__(self, method):
        super().__init__()
        self.method = method
        self.steps, self.epochs, self.slots = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(_values(self.model.weights))
        self.last_slots = _values(self.model.optimizer.variables)

    def on_epoch_end(self, epoch, logs=None):
        hare = _values(self.model.weights)
        self.epochs.append((hare, _values(self.method.tortoise_weights)))
        self.slots.append(
            (self.last_slots, _values(self.model.optimizer.variables))
        )


def _fit(model, callbacks, epochs, batch_size=8):
    x, y = _data()
    model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=False,
        callbacks=callbacks,
        verbose=0,
    )


def test_tortoise_is_the_exact_ema_of_weights_and_bn_statistics():
    model = _bn_model()
    initial = _values(model.weights)
    method = HareTortoise(momentum=0.9, reset=False)
    recorder = _Recorder(method)
    _fit(model, [method, recorder], epochs=2)
    expected = initial
    keep, take = np.float32(0.9), np.float32(1.0 - 0.9)
    for hare in recorder.steps:
        expected = [keep * t + take * h for t, h in zip(expected, hare)]
    assert len(recorder.steps) == 8
    paths = [v.path for v in model.weights]
    assert "bn0/moving_mean" in paths
    for path, tortoise, value in zip(paths, method.tortoise_weights, expected):
        np.testing.assert_allclose(tortoise.numpy(), value, rtol=1e-6)
        assert not np.allclose(value, initial[paths.index(path)])
    assert method.history == []


@pytest.mark.parametrize(
    "schedule, resets", [("reference", [0, 2, 4]), ("every", [1, 3])]
)
def test_hare_becomes_tortoise_only_at_reset_epochs(schedule, resets):
    model = _bn_model()
    method = HareTortoise(0.9, every=(2, "epochs"), reset_schedule=schedule)
    recorder = _Recorder(method)
    _fit(model, [method, recorder], epochs=5)
    assert method.history == resets
    for epoch, (hare, tortoise) in enumerate(recorder.epochs):
        same = all(np.array_equal(h, t) for h, t in zip(hare, tortoise))
        assert same == (epoch in resets)
        before, after = recorder.slots[epoch]  # slots kept by a reset
        for a, b in zip(before, after):
            np.testing.assert_array_equal(a, b)


def test_reset_optimizer_zeroes_the_slots():
    model = _bn_model()
    method = HareTortoise(0.9, every=(1, "epochs"), reset_optimizer=True)
    recorder = _Recorder(method)
    _fit(model, [method, recorder], epochs=1)
    _, after = recorder.slots[0]
    slots = [
        value
        for variable, value in zip(model.optimizer.variables, after)
        if "momentum" in variable.name or "velocity" in variable.name
    ]
    assert len(slots) == 12 and not any(s.any() for s in slots)
    assert int(model.optimizer.iterations) == 4  # the step count is kept


def test_tortoise_model_evaluates_the_tortoise_and_logs_it():
    model = _bn_model()
    x, y = _data()
    method = HareTortoise(0.5, reset=False, validation_data=(x, y))
    history = model.fit(
        x, y, batch_size=8, epochs=2, callbacks=[method], verbose=0
    )
    clone = method.tortoise_model()
    assert clone is not model
    for weight, tortoise in zip(clone.weights, method.tortoise_weights):
        np.testing.assert_array_equal(weight.numpy(), tortoise.numpy())
    pairs = list(zip(method.tortoise_weights, model.weights))
    logits, _ = model.stateless_call(
        [t for t, v in pairs if v.trainable],
        [t for t, v in pairs if not v.trainable],
        x,
    )
    np.testing.assert_allclose(clone.predict(x, verbose=0), logits, atol=1e-6)
    accuracy = np.mean(np.argmax(logits, -1) == y)
    result = method.evaluate_tortoise(x, y)
    assert result["accuracy"] == pytest.approx(accuracy)
    assert history.history["tortoise_accuracy"][-1] == pytest.approx(accuracy)
    assert "tortoise_loss" in history.history


def test_tortoise_survives_a_resume(tmp_path):
    model = _bn_model()
    method = HareTortoise(0.9, reset=False)
    _fit(model, [method], epochs=1)
    saved = _values(method.tortoise_weights)
    path = tf.train.Checkpoint(model=model, **method.checkpoint_items()).write(
        str(tmp_path / "ckpt")
    )
    resumed, again = _bn_model(seed=3), HareTortoise(0.9, reset=False)
    again.set_model(resumed)  # the state exists before it is restored
    tf.train.Checkpoint(model=resumed, **again.checkpoint_items()).read(path)
    for restored, value in zip(again.tortoise_weights, saved):
        np.testing.assert_array_equal(restored.numpy(), value)


def test_settings_are_validated():
    for kwargs, setting in [
        ({"momentum": 1.0}, "momentum"),
        ({"every": (0, "epochs")}, "every"),
        ({"reset_schedule": "paper"}, "reset_schedule"),
    ]:
        with pytest.raises(UsageError, match=f"HareTortoise.{setting}"):
            HareTortoise(**kwargs)
    with pytest.raises(UsageError, match="no tortoise yet"):
        HareTortoise().tortoise_weights
    model = _bn_model()
    model.compile(optimizer="adam", loss=LOSS, steps_per_execution=2)
    with pytest.raises(UsageError, match="steps_per_execution"):
        _fit(model, [HareTortoise()], epochs=1)


def test_mirrored_hare_tortoise_matches_one_device():
    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = models.mlp(4, input_shape=(6,), width=8, depth=1)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
        method = HareTortoise(0.8, every=(2, "epochs"))
        _fit(model, [method], epochs=3, batch_size=16)
        return model, method

    one, one_method = run(tf.distribute.get_strategy())
    strategy = step_methods.mirrored()
    two, two_method = run(strategy)
    assert two_method.history == [0, 2]
    step_methods.replicas_agree(
        strategy, two.weights + two_method.tortoise_weights
    )
    pairs = list(zip(one.weights, two.weights)) + list(
        zip(one_method.tortoise_weights, two_method.tortoise_weights)
    )
    for a, b in pairs:
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _linear_student(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(4, name="classifier")(inputs)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("reduction", ["batchmean", "reference"])
def test_self_distillation_loss_is_ce_plus_kl_by_hand(reduction):
    student = _linear_student()
    wrapper = SelfDistillation(
        student, 0.9, weight=2.0, temperature=2.0, kl_reduction=reduction
    )
    wrapper.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    rng = np.random.default_rng(7)
    teacher = [w + rng.normal(size=w.shape) for w in student.get_weights()]
    for variable, value in zip(wrapper.teacher_weights, teacher):
        variable.assign(value.astype(np.float32))
    x, y = _data(8)
    kernel, bias = student.get_weights()
    logits = x.astype(np.float64) @ kernel + bias
    t_logits = x.astype(np.float64) @ teacher[0] + teacher[1]
    log_p = _log_softmax(logits)
    ce = -log_p[np.arange(8), y]
    log_s, log_t = _log_softmax(logits / 2), _log_softmax(t_logits / 2)
    kl = (np.exp(log_t) * (log_t - log_s)).sum(-1)
    if reduction == "reference":
        kl = kl / 4
    logs = wrapper.train_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(ce.mean() + 2 * kl.mean(), rel=1e-5)
    assert logs["distillation_loss"] == pytest.approx(kl.mean(), rel=1e-5)
    # ∂/∂z: (softmax(z) − onehot)/B + 2·(softmax(z/T) − p_teacher)/(T·B·c)
    c = 4 if reduction == "reference" else 1
    grad = (np.exp(log_p) - np.eye(4)[y]) / 8 + 2 * (
        np.exp(log_s) - np.exp(log_t)
    ) / (2 * 8 * c)
    new_kernel, new_bias = kernel - 0.1 * x.T @ grad, bias - 0.1 * grad.sum(0)
    np.testing.assert_allclose(student.get_weights()[0], new_kernel, atol=1e-6)
    np.testing.assert_allclose(student.get_weights()[1], new_bias, atol=1e-6)
    # then the teacher moves: θ_T ← 0.9·θ_T + 0.1·θ (the updated student)
    for variable, old, new in zip(
        wrapper.teacher_weights, teacher, student.get_weights()
    ):
        np.testing.assert_allclose(
            variable.numpy(), 0.9 * old + 0.1 * new, atol=1e-6
        )


def test_self_distillation_validates_and_checkpoints_the_teacher():
    with pytest.raises(UsageError, match="not built"):
        SelfDistillation(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(UsageError, match="teacher_momentum"):
        SelfDistillation(_linear_student(), teacher_momentum=1.5)
    with pytest.raises(UsageError, match="kl_reduction"):
        SelfDistillation(_linear_student(), kl_reduction="mean")
    wrapper = SelfDistillation(_linear_student())
    teacher = {id(v) for v in wrapper.teacher_weights}
    assert teacher <= {id(v) for v in wrapper.non_trainable_weights}
    assert not teacher & {id(v) for v in wrapper.trainable_weights}


def test_mirrored_self_distillation_matches_one_device():
    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            student = models.mlp(4, input_shape=(6,), width=8, depth=1)
            wrapper = SelfDistillation(student, 0.5, weight=5.0)
            wrapper.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS)
        x, y = _data()
        history = wrapper.fit(
            x, y, batch_size=16, epochs=2, shuffle=False, verbose=0
        )
        return wrapper, history.history

    one, one_logs = run(tf.distribute.get_strategy())
    strategy = step_methods.mirrored()
    two, two_logs = run(strategy)
    assert one_logs["distillation_loss"][-1] > 0
    for key in ("loss", "distillation_loss"):
        np.testing.assert_allclose(one_logs[key], two_logs[key], rtol=1e-5)
    step_methods.replicas_agree(strategy, two.weights)
    for a, b in zip(one.weights, two.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)

"""ShrinkAndPerturb, HeadReset and their cadence (lee2024 App. A.4, Ash &
Adams, hernandez-garcia2025): exact interpolation toward θ_0, noise of the
right std, seeded draws, only the intended weights change, θ_0 survives a
resume, and mirrored replicas agree with each other and with one device."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods
from zapkeras import models
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.methods import resets
from zapkeras.methods.shrink_perturb import HeadReset
from zapkeras.methods.shrink_perturb import ShrinkAndPerturb

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=32, features=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    return x, rng.integers(0, classes, n)


def _bn_model(width=8, classes=4, features=6, seed=0):
    """Dense → BatchNorm → ReLU → classifier: has non-trainable state."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((features,))
    x = keras.layers.Dense(width, name="dense0")(inputs)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.ReLU()(x)
    outputs = keras.layers.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, outputs)


def _compiled(model, learning_rate=1e-2, optimizer=keras.optimizers.Adam):
    model.compile(optimizer=optimizer(learning_rate), loss=LOSS)
    return model


def _weights(model):
    return {v.path: v.numpy().copy() for v in model.weights}


def _fit(model, callbacks, epochs=1, batch_size=8):
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


def _end_task(model, method):
    method.set_model(model)
    method.on_task_end(0)


def _mix(keep_weight, value, initial):
    """(1 − λ)·θ + λ·θ_0 in float32, the callback's operation order."""
    lam = np.float32(keep_weight)
    return (np.float32(1.0) - lam) * value + lam * initial


def test_interpolation_toward_init_is_exact_and_leaves_state_alone():
    model = _compiled(_bn_model())
    initial = _weights(model)
    snp = ShrinkAndPerturb(lambda_backbone=0.8, lambda_head=0.5)
    _fit(model, [snp], epochs=2)
    trained = _weights(model)
    snp.on_task_end(0)
    after = _weights(model)
    for path in ("dense0/kernel", "dense0/bias", "bn0/gamma", "bn0/beta"):
        expected = _mix(0.8, trained[path], initial[path])
        np.testing.assert_array_equal(after[path], expected)
    for path in ("classifier/kernel", "classifier/bias"):
        expected = _mix(0.5, trained[path], initial[path])
        np.testing.assert_array_equal(after[path], expected)
    for path in ("bn0/moving_mean", "bn0/moving_variance"):
        np.testing.assert_array_equal(after[path], trained[path])
        assert not np.array_equal(after[path], initial[path])


def test_explicit_initial_weights_are_the_target():
    model = _compiled(_bn_model())
    target = [w + 1.0 for w in model.get_weights()]
    snp = ShrinkAndPerturb(lambda_backbone=1.0, initial_weights=target)
    snp.set_model(model)  # acts without a fit
    snp.on_task_end(0)
    for variable, value in zip(model.weights, target):
        if variable.trainable:
            np.testing.assert_array_equal(variable.numpy(), value)


@pytest.mark.parametrize("fit_again", [True, False])
def test_initial_weights_survive_a_resume(tmp_path, fit_again):
    model = _compiled(_bn_model(seed=0))
    initial = _weights(model)
    snp = ShrinkAndPerturb(lambda_backbone=0.5)
    _fit(model, [snp])
    path = tf.train.Checkpoint(model=model, **snp.checkpoint_items()).write(
        str(tmp_path / "ckpt")
    )
    resumed = _compiled(_bn_model(seed=1))
    again = ShrinkAndPerturb(lambda_backbone=0.5)
    again.set_model(resumed)  # the state exists before it is restored
    checkpoint = tf.train.Checkpoint(model=resumed, **again.checkpoint_items())
    checkpoint.read(path).assert_existing_objects_matched()
    if fit_again:
        _fit(resumed, [again])
    trained = _weights(resumed)
    again.on_task_end(0)
    kernel = resumed.get_layer("dense0").kernel.numpy()
    expected = _mix(0.5, trained["dense0/kernel"], initial["dense0/kernel"])
    np.testing.assert_array_equal(kernel, expected)


def test_noise_injection_has_the_right_std_and_is_seeded():
    def noise(seed):
        keras.utils.set_random_seed(0)
        model = models.mlp(4, input_shape=(100,), width=200, depth=1)
        _compiled(model, 0.0, keras.optimizers.SGD)  # lr 0: only noise moves
        before = _weights(model)
        snp = ShrinkAndPerturb(
            interpolate_to=None, noise_std=0.01, every=(1, "steps"), seed=seed
        )
        x = np.zeros((8, 100), np.float32)
        model.fit(x, np.zeros(8), batch_size=8, callbacks=[snp], verbose=0)
        after = _weights(model)
        return {k: after[k] - before[k] for k in before}

    first, again, other = noise(3), noise(3), noise(4)
    kernel = first["dense0/kernel"]
    assert abs(kernel.std() - 0.01) < 0.01 * 0.02
    assert abs(kernel.mean()) < 0.01 * 0.05
    assert np.all(first["classifier/bias"] != 0)  # every parameter tensor
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
        assert not np.array_equal(first[key], other[key])


def test_shrink_multiplies_every_trainable_weight():
    model = _compiled(_bn_model())
    snp = ShrinkAndPerturb(0.4, interpolate_to=None, every=(1, "epochs"))
    recorder = _EpochEndWeights()
    _fit(model, [recorder, snp])
    after = _weights(model)
    for variable in model.weights:
        before = recorder.weights[0][variable.path]
        expected = np.float32(0.4) * before if variable.trainable else before
        np.testing.assert_array_equal(after[variable.path], expected)


class _EpochEndWeights(keras.callbacks.Callback):
    """Records the weights at each epoch end (placed before the method)."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(_weights(self.model))


def _slots(model):
    return {v.path: v.numpy().copy() for v in model.optimizer.variables}


@pytest.mark.parametrize("reset_optimizer", [False, True])
def test_head_reset_restores_exactly_the_initial_head(reset_optimizer):
    model = _compiled(_bn_model())
    initial = _weights(model)
    reset = HeadReset(reset_optimizer=reset_optimizer)
    _fit(model, [reset], epochs=2)
    trained, slots = _weights(model), _slots(model)
    reset.on_task_end(0)
    after, slots_after = _weights(model), _slots(model)
    head = {"classifier/kernel", "classifier/bias"}
    for path in after:
        expected = initial[path] if path in head else trained[path]
        np.testing.assert_array_equal(after[path], expected)
    head_slots = {
        s.path
        for v in model.get_layer("classifier").trainable_variables
        for s in resets.optimizer_slots(model.optimizer, v)
    }
    assert len(head_slots) == 4
    for path, value in slots_after.items():
        if reset_optimizer and path in head_slots:
            assert not value.any()
        else:
            np.testing.assert_array_equal(value, slots[path])


def test_head_reset_resample_draws_fresh_kaiming_weights():
    keras.utils.set_random_seed(0)
    model = _compiled(models.mlp(100, input_shape=(6,), width=400, depth=1))
    initial = _weights(model)
    reset = HeadReset(resample=True, seed=5)
    reset.set_model(model)
    body = {k: v for k, v in _weights(model).items() if "classifier" not in k}
    reset.on_task_end(0)
    first = model.get_layer("classifier").kernel.numpy()
    reset.on_task_end(1)
    second = model.get_layer("classifier").kernel.numpy()
    for kernel in (first, second):
        assert abs(kernel.std() - np.sqrt(2 / 400)) < np.sqrt(2 / 400) * 0.02
        assert not np.array_equal(kernel, initial["classifier/kernel"])
    assert not np.array_equal(first, second)
    assert not model.get_layer("classifier").bias.numpy().any()
    after = _weights(model)
    for path, value in body.items():
        np.testing.assert_array_equal(after[path], value)


class _Counter(base.Method):
    def __init__(self, every, every_n):
        super().__init__((every_n, every))
        self.acted = []

    def act(self):
        self.acted.append(int(self.model.optimizer.iterations))


@pytest.mark.parametrize(
    "every, every_n, expected",
    [
        ("step", 3, [3, 6, 9, 12]),
        ("epoch", 2, [8]),
        ("step", 1, list(range(1, 13))),
    ],
)
def test_cadence_counts_steps_and_epochs(every, every_n, expected):
    model = _compiled(_bn_model())
    counter = _Counter(every, every_n)
    _fit(model, [counter], epochs=3)  # 4 steps per epoch
    assert counter.acted == expected


def test_task_cadence_and_steps_per_execution_guard():
    model = _compiled(_bn_model())
    counter = _Counter("task", 2)
    _fit(model, [counter])
    for task in range(4):
        counter.on_task_end(task)
    assert counter.acted == [4, 4]
    model.compile(optimizer="sgd", loss=LOSS, steps_per_execution=2)
    with pytest.raises(UsageError, match="steps_per_execution"):
        _fit(model, [ShrinkAndPerturb(interpolate_to=None, every=(1, "steps"))])


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"shrink": 0.5}, "shrink"),
        ({"interpolate_to": None, "lambda_head": 0.5}, "lambda_backbone"),
        ({"lambda_backbone": 1.5}, "lambda_backbone"),
        ({"interpolate_to": "zeros"}, "interpolate_to"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"every": "batch"}, "every"),
        ({"every_n": 0}, "every_n"),
        ({"seed": -2}, "seed"),
        ({"interpolate_to": "noise", "initial_weights": []}, "initial_weights"),
        ({"init_overrides": {}}, "init_overrides"),
    ],
)
def test_bad_settings_raise_usage_errors(kwargs, setting):
    with pytest.raises(UsageError, match=f"ShrinkAndPerturb.{setting}"):
        ShrinkAndPerturb(**kwargs)


def test_missing_head_and_unknown_initializer_are_named():
    model = _compiled(_bn_model())
    with pytest.raises(UsageError, match="HeadReset.layer = \\['head'\\]"):
        _end_task(model, HeadReset(layer="head"))
    inputs = keras.Input((6,))
    odd = keras.layers.Dense(4, kernel_initializer="orthogonal", name="odd")
    model = _compiled(keras.Model(inputs, odd(inputs)))
    with pytest.raises(UsageError, match="odd/kernel"):
        _end_task(model, HeadReset(layer="odd", resample=True))
    override = {"odd/kernel": ("normal", 0.0, 0.5)}
    reset = HeadReset(layer="odd", resample=True, init_overrides=override)
    reset.set_model(model)
    reset.on_task_end(0)
    assert 0.2 < odd.kernel.numpy().std() < 0.8
    with pytest.raises(UsageError, match="no model yet"):
        ShrinkAndPerturb().on_task_end(0)


def test_noise_target_knows_the_zapkeras_norms():
    keras.utils.set_random_seed(0)
    model = _compiled(
        models.mlp(4, input_shape=(6,), width=8, layer_norm="reparam")
    )
    gamma = model.get_layer("norm0").gamma
    gamma.assign(np.ones(gamma.shape, np.float32))
    snp = ShrinkAndPerturb(interpolate_to="noise", lambda_backbone=1.0)
    _end_task(model, snp)
    assert not gamma.numpy().any()  # ReparamLayerNorm's γ starts at 0


def test_mirrored_matches_one_device_and_keeps_replicas_identical():
    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = models.mlp(4, input_shape=(6,), width=8, depth=1)
            _compiled(model, 0.05, keras.optimizers.SGD)
        methods = [
            ShrinkAndPerturb(
                interpolate_to=None, noise_std=0.01, every=(1, "steps"), seed=1
            ),
            HeadReset(resample=True, seed=2, every=(1, "epochs")),
            ShrinkAndPerturb(lambda_backbone=0.3),
        ]
        _fit(model, methods, epochs=2, batch_size=16)
        for method in methods:
            method.on_task_end(0)
        return model

    one = run(tf.distribute.get_strategy())
    strategy = step_methods.mirrored()
    two = run(strategy)
    step_methods.replicas_agree(strategy, two.weights)
    for a, b in zip(one.weights, two.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_two_shrink_perturbs_in_one_run_log_under_distinct_names():
    decay = ShrinkAndPerturb(0.99, interpolate_to=None, every=(1, "steps"))
    noise = ShrinkAndPerturb(1.0, 0.01, interpolate_to=None, every=(2, "steps"))
    methods = base.methods_in([decay, keras.callbacks.History(), noise])
    assert [m.name for m in methods] == ["shrink_perturb", "shrink_perturb_2"]
    model = step_methods.mlp()
    x, y = step_methods.data(n=64)
    history = step_methods.fit(model, methods, x, y).history  # 4 steps
    assert history["method/shrink_perturb/resets"] == [4.0]
    assert history["method/shrink_perturb_2/resets"] == [2.0]
    assert base.counters_of(methods) == {
        "shrink_perturb/resets": 4.0,
        "shrink_perturb_2/resets": 2.0,
    }

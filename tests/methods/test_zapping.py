"""zap() and the Zapping callback (frati2024 §2.1.1): exactly the
chosen units change, with the Kaiming std, optimizer slots follow, draws are
seeded, and mirrored replicas stay identical."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods
from zapkeras import models
from zapkeras.errors import UsageError
from zapkeras.methods import resets
from zapkeras.methods.zapping import Zapping
from zapkeras.methods.zapping import zap

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=64, features=6, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    return x, rng.integers(0, classes, n)


def _trained_mlp(steps=3, strategy=None):
    """A small MLP after a few real Adam steps (nonzero moments)."""
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.mlp(10, input_shape=(6,), width=12, depth=1)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=LOSS)
    x, y = _data()
    model.fit(x, y, batch_size=16, steps_per_epoch=steps, verbose=0)
    return model


def _snapshot(model):
    state = {v.path: v.numpy().copy() for v in model.weights}
    state.update({v.name: v.numpy().copy() for v in model.optimizer.variables})
    return state


def _changed(before, after):
    return {k for k in before if not np.array_equal(before[k], after[k])}


def _slot_names(model, variable):
    return {s.name for s in resets.optimizer_slots(model.optimizer, variable)}


def test_slots_are_found_by_name_and_shape():
    model = _trained_mlp()
    head = model.get_layer("classifier")
    assert _slot_names(model, head.kernel) == {
        "classifier_kernel_momentum",
        "classifier_kernel_velocity",
    }
    assert _slot_names(model, head.bias) == {
        "classifier_bias_momentum",
        "classifier_bias_velocity",
    }


@pytest.mark.parametrize("with_optimizer", [False, True])
def test_only_chosen_columns_bias_and_slots_change(with_optimizer):
    model = _trained_mlp()
    head = model.get_layer("classifier")
    before = _snapshot(model)
    slots = _slot_names(model, head.kernel) | _slot_names(model, head.bias)
    for path in slots:
        assert np.all(before[path][..., [1, 4]] != 0)  # real Adam state
    optimizer = model.optimizer if with_optimizer else None
    zapped = zap(head, [4, 1, 4], optimizer=optimizer, seed=1)
    np.testing.assert_array_equal(zapped, [1, 4])
    after = _snapshot(model)
    expected = {"classifier/kernel", "classifier/bias"}
    if with_optimizer:
        expected |= slots
    assert _changed(before, after) == expected
    others = [0, 2, 3, 5, 6, 7, 8, 9]
    for path in expected | slots:  # the rest is bit-identical
        np.testing.assert_array_equal(
            before[path][..., others], after[path][..., others]
        )
    columns = [s["classifier/kernel"][:, [1, 4]] for s in (before, after)]
    assert np.all(columns[0] != columns[1])
    assert not after["classifier/bias"][[1, 4]].any()
    for path in slots if with_optimizer else ():
        assert not after[path][..., [1, 4]].any()


def test_reset_bias_false_leaves_bias_and_its_slots():
    model = _trained_mlp()
    head = model.get_layer("classifier")
    before = _snapshot(model)
    zap(head, [2], optimizer=model.optimizer, reset_bias=False, seed=1)
    assert _changed(before, _snapshot(model)) == {"classifier/kernel"} | (
        _slot_names(model, head.kernel)
    )


def _wide_dense(units=200, fan_in=4096):
    layer = keras.layers.Dense(units)
    layer.build((None, fan_in))
    return layer


def test_per_unit_std_is_kaiming():
    layer = _wide_dense()
    zap(layer, seed=0)
    kernel = layer.kernel.numpy()
    assert abs(kernel.std() / np.sqrt(2 / 4096) - 1) < 0.01
    assert abs(kernel.mean()) < 2e-4
    column = kernel[:, 7]
    assert abs(column.std() / np.sqrt(2 / 4096) - 1) < 0.05


@pytest.mark.parametrize(
    "units, k", [(list(range(50)), 50), (3, 1), (None, 200)]
)
def test_reference_std_shrinks_with_units_zapped_together(units, k):
    layer = _wide_dense()
    zapped = zap(layer, units, std_mode="reference", seed=0)
    drawn = layer.kernel.numpy()[:, zapped]
    assert abs(drawn.std() / np.sqrt(2 / (k * 4096)) - 1) < 0.05


def test_conv_kernels_zap_the_last_axis():
    conv = keras.layers.Conv2D(200, 3)
    conv.build((None, 8, 8, 64))
    conv.bias.assign(np.ones(200, np.float32))
    before = conv.kernel.numpy().copy()
    zap(conv, [5, 9], seed=2)
    kernel = conv.kernel.numpy()
    changed = np.any(kernel != before, axis=(0, 1, 2))
    np.testing.assert_array_equal(np.flatnonzero(changed), [5, 9])
    assert abs(kernel[..., [5, 9]].std() / np.sqrt(2 / 576) - 1) < 0.05
    zeroed = np.flatnonzero(conv.bias.numpy() == 0)
    np.testing.assert_array_equal(zeroed, [5, 9])
    zap(conv, seed=2)
    assert abs(conv.kernel.numpy().std() / np.sqrt(2 / 576) - 1) < 0.01


def test_int_seed_repeats_seed_generator_advances():
    layer = _wide_dense(20, 30)

    def draw(seed):
        zap(layer, [0, 3], seed=seed)
        return layer.kernel.numpy()[:, [0, 3]].copy()

    np.testing.assert_array_equal(draw(5), draw(np.int64(5)))
    assert not np.array_equal(draw(5), draw(6))
    generator = keras.random.SeedGenerator(5)
    assert not np.array_equal(draw(generator), draw(generator))
    assert not np.array_equal(draw(None), draw(None))


def test_tf_function_with_tensor_units_matches_eager():
    eager, traced = _wide_dense(6, 8), _wide_dense(6, 8)
    traced.kernel.assign(eager.kernel)
    zap(eager, [4, 1], seed=7)

    @tf.function
    def zap_traced(units):
        return zap(traced, units, seed=7)

    np.testing.assert_array_equal(zap_traced(tf.constant([1, 4])), [1, 4])
    np.testing.assert_array_equal(traced.kernel.numpy(), eager.kernel.numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="units"):
        zap_traced(tf.constant([1, 6]))


@pytest.mark.parametrize(
    "units, kwargs, match",
    [
        ([0, 10], {}, r"units.*out of range.*0\.\.9"),
        ([-1], {}, "out of range"),
        ([0.5], {}, "integer"),
        (None, {"std_mode": "torch"}, "std_mode"),
    ],
)
def test_bad_arguments_raise_usage_error(units, kwargs, match):
    with pytest.raises(UsageError, match=match):
        zap(_wide_dense(10, 4), units, **kwargs)


def test_layer_without_kernel_raises_usage_error():
    with pytest.raises(UsageError, match="kernel"):
        zap(keras.layers.Dense(3), [0])  # not built


def test_mirrored_zap_keeps_replicas_identical():
    strategy = step_methods.mirrored()
    model = _trained_mlp(strategy=strategy)
    head = model.get_layer("classifier")
    assert isinstance(head.kernel.value, tf.distribute.DistributedValues)
    slots = [
        slot
        for variable in (head.kernel, head.bias)
        for slot in resets.optimizer_slots(model.optimizer, variable)
    ]
    checked = [head.kernel, head.bias] + slots
    before = _snapshot(model)
    zap(head, [1, 2], optimizer=model.optimizer, seed=3)
    step_methods.replicas_agree(strategy, checked)
    with strategy.scope():
        generator = keras.random.SeedGenerator(4)

    @tf.function
    def cross_replica():
        return zap(head, [5], optimizer=model.optimizer, seed=generator)

    cross_replica()
    step_methods.replicas_agree(strategy, checked)

    def in_replica():
        # Each replica asks for other units: zap runs once, via merge_call,
        # on the first replica's choice.
        context = tf.distribute.get_replica_context()
        units = tf.reshape(context.replica_id_in_sync_group + 7, [1])
        return zap(head, units, optimizer=model.optimizer, seed=generator)

    results = tf.function(lambda: strategy.run(in_replica))()
    local = strategy.experimental_local_results(results)
    assert {tuple(r.numpy()) for r in local} == {(7,)}
    step_methods.replicas_agree(strategy, checked)
    after = _snapshot(model)
    kernels = [s["classifier/kernel"] for s in (before, after)]
    zapped = np.flatnonzero(np.any(kernels[0] != kernels[1], axis=0))
    np.testing.assert_array_equal(zapped, [1, 2, 5, 7])
    for slot in slots:
        assert np.all(before[slot.name][..., zapped] != 0)
        assert not after[slot.name][..., zapped].any()
    for path in ("dense0/kernel", "dense0_kernel_momentum"):
        np.testing.assert_array_equal(after[path], before[path])


class _Spy(keras.callbacks.Callback):
    """Records the head (and its Adam momentum) around every epoch."""

    def __init__(self):
        super().__init__()
        self.begin, self.end, self.momentum = [], [], []

    def _head(self):
        head = self.model.get_layer("classifier")
        return np.concatenate([head.kernel.numpy(), head.bias.numpy()[None]])

    def on_epoch_begin(self, epoch, logs=None):
        self.begin.append(self._head())
        slots = resets.optimizer_slots(
            self.model.optimizer, self.model.get_layer("classifier").kernel
        )
        momentum = [s for s in slots if s.name.endswith("_momentum")]
        self.momentum.append(momentum[0].numpy() if momentum else None)

    def on_epoch_end(self, epoch, logs=None):
        self.end.append(self._head())


def _fit(zapping, learning_rate=0.0, epochs=3, strategy=None):
    """Fits a fresh seeded MLP with [zapping, spy]; returns (model, spy)."""
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.mlp(10, input_shape=(6,), width=12, depth=1)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=LOSS)
    model.get_layer("classifier").bias.assign(np.ones(10, np.float32))
    spy = _Spy()
    x, y = _data()
    model.fit(
        x, y, batch_size=16, epochs=epochs, callbacks=[zapping, spy], verbose=0
    )
    return model, spy


def _zapped_units(spy):
    """Per epoch, the head columns changed between epochs (lr 0)."""
    zapped = [np.array([], int)]
    for e in range(1, len(spy.begin)):
        diff = np.any(spy.begin[e] != spy.end[e - 1], axis=0)
        zapped.append(np.flatnonzero(diff))
    return zapped


def test_callback_zaps_at_start_of_epochs_1_and_2_only():
    _, spy = _fit(Zapping(every=(1, "epochs"), fraction=0.3, seed=3))
    units = _zapped_units(spy)
    assert [len(u) for u in units] == [0, 3, 3]
    for before, after in zip(spy.begin, spy.end):
        np.testing.assert_array_equal(before, after)  # lr 0: fit is a no-op
    for e in (1, 2):
        assert not spy.begin[e][-1, units[e]].any()  # zeroed biases


def test_callback_history_cadence_and_fraction():
    zapping = Zapping(every=(2, "epochs"), fraction=0.25, seed=1)
    _fit(zapping, epochs=5)
    assert zapping.history == [(2, 2), (4, 2)]  # round(2.5) == 2
    zapping = Zapping(fraction=1e-6, seed=1)
    _fit(zapping, epochs=2)
    assert zapping.history == [(1, 1)]
    zapping = Zapping(units=[0, 9], seed=1)
    _, spy = _fit(zapping, epochs=2)
    np.testing.assert_array_equal(_zapped_units(spy)[1], [0, 9])


def test_same_seed_same_units_and_weights_and_resumable():
    first, spy_a = _fit(Zapping(fraction=0.5, seed=11))
    second, spy_b = _fit(Zapping(fraction=0.5, seed=11))
    _, spy_c = _fit(Zapping(fraction=0.5, seed=12))
    for a, b in zip(_zapped_units(spy_a), _zapped_units(spy_b)):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, c)
        for a, c in zip(_zapped_units(spy_a), _zapped_units(spy_c))
    )
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Resuming at epoch 2 zaps exactly as the uninterrupted run did.
    resumed, _ = _fit(Zapping(fraction=0.5, seed=11), epochs=2)
    x, y = _data()
    later = Zapping(fraction=0.5, seed=11)
    resumed.fit(
        x,
        y,
        batch_size=16,
        initial_epoch=2,
        epochs=3,
        callbacks=[later],
        verbose=0,
    )
    assert later.history == [(2, 5)]
    for a, b in zip(first.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_real_training_reproducible_and_optimizer_reset():
    runs = [
        _fit(Zapping(fraction=0.5, seed=2, reset_optimizer=True), 1e-2)
        for _ in range(2)
    ]
    for a, b in zip(runs[0][0].get_weights(), runs[1][0].get_weights()):
        np.testing.assert_array_equal(a, b)
    spy = runs[0][1]
    for e in (1, 2):
        rng = np.random.default_rng([2, e])
        units = np.sort(rng.choice(10, 5, replace=False))
        momentum = spy.momentum[e]
        assert not momentum[:, units].any()
        others = np.setdiff1d(np.arange(10), units)
        assert np.all(momentum[:, others] != 0)


def test_callback_under_mirrored_strategy_keeps_replicas_identical():
    strategy = step_methods.mirrored()
    zapping = Zapping(fraction=0.5, seed=2, reset_optimizer=True)
    model, _ = _fit(zapping, 1e-2, strategy=strategy)
    assert zapping.history == [(1, 5), (2, 5)]
    head = model.get_layer("classifier")
    step_methods.replicas_agree(
        strategy,
        model.weights + resets.optimizer_slots(model.optimizer, head.kernel),
    )


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"every": (0, "epochs")}, "every"),
        ({"std_mode": "pytorch"}, "std_mode"),
        ({"seed": -1}, "seed"),
    ],
)
def test_callback_validates_arguments(kwargs, setting):
    with pytest.raises(UsageError, match=setting):
        Zapping(**kwargs)


def test_callback_names_a_missing_layer():
    with pytest.raises(UsageError, match="Zapping.layer = 'head'"):
        _fit(Zapping(layer="head"), epochs=2)

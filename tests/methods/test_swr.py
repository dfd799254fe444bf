"""Selective Weight Reinitialization (hernandez-garcia2025 Alg. 1): which
weights are chosen, what they become, what stays bit-identical, optimizer
slots, running utilities, seeds and MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods as sm
from zapkeras.errors import UsageError
from zapkeras.methods import resets
from zapkeras.methods.swr import SelectiveWeightReinit
from zapkeras.methods.swr import select
from zapkeras.models.layers import ReparamLayerNorm


def test_threshold_takes_utilities_at_or_below_factor_times_mean():
    utility = np.array([[0.1, 0.5], [0.2, 2.0]])  # mean 0.7
    np.testing.assert_array_equal(
        select(utility, "threshold", 0.5, None), [[True, False], [True, False]]
    )
    tied = np.array([1.0, 1.0, 1.0, 5.0])  # mean 2, threshold exactly 1
    np.testing.assert_array_equal(
        select(tied, "threshold", 0.5, None), [True, True, True, False]
    )
    assert not select(tied, "threshold", 0.0, None).any()


def test_proportional_takes_lowest_with_bernoulli_remainder():
    utility = np.array([5.0, 0.3, 9.0, 0.1, 7.0, 0.2, 8.0, 6.0, 0.4, 4.0])
    counts = set()
    for seed in range(30):
        mask = select(
            utility, "proportional", 0.25, np.random.default_rng(seed)
        )
        count = mask.sum()  # floor(2.5) + Bernoulli(0.5)
        counts.add(count)
        np.testing.assert_array_equal(
            np.flatnonzero(mask), np.sort(np.argsort(utility)[:count])
        )
        again = select(
            utility, "proportional", 0.25, np.random.default_rng(seed)
        )
        np.testing.assert_array_equal(mask, again)
    assert counts == {2, 3}
    ties = select(
        np.array([1.0, 1.0, 1.0, 0.0]),
        "proportional",
        0.5,
        np.random.default_rng(),
    )
    np.testing.assert_array_equal(ties, [True, False, False, True])


def _set_up(swr, **mlp_args):
    model = sm.mlp(**mlp_args)
    swr.set_model(model)
    return model


def test_callback_reinitialises_exactly_the_selected_weights():
    swr = SelectiveWeightReinit((3, "steps"), 0.5, reinit="mean", seed=0)
    model = _set_up(swr, layer_norm="pre")
    for variable, utility in zip(swr.variables, swr.utilities):
        values = np.ones(variable.shape, np.float32)
        values.reshape(-1)[::3] = 0.1  # chosen: u ≤ 0.5·mean
        utility.assign(values)
        variable.assign(np.full(variable.shape, 3.0, np.float32))
    before = sm.weights(model)
    sm.step_to(swr, 2)  # not a multiple of 3: nothing happens
    assert swr.last_reinitialized == {}
    sm.step_to(swr, 3)
    after = sm.weights(model)
    means = {"norm0/gamma": 1.0, "norm1/gamma": 1.0}
    for variable in swr.variables:
        chosen = np.zeros(variable.shape, bool)
        chosen.reshape(-1)[::3] = True
        path = variable.path
        assert swr.last_reinitialized[path] == chosen.sum()
        assert (after[path][chosen] == means.get(path, 0.0)).all()
        np.testing.assert_array_equal(
            after[path][~chosen], before[path][~chosen]
        )
    assert swr.counters()["reinitialized"] == sum(
        swr.last_reinitialized.values()
    )


@pytest.mark.parametrize("layer_norm", ["pre", "reparam"])
def test_resample_draws_each_tensors_initial_distribution(layer_norm):
    swr = SelectiveWeightReinit((1, "steps"), 1e9, utility="magnitude", seed=0)
    model = sm.compiled(
        lambda: keras.Model(*_wide(layer_norm)), learning_rate=1e-3
    )
    swr.set_model(model)
    for variable in swr.variables:
        variable.assign(np.full(variable.shape, 5.0, np.float32))
    sm.step_to(swr, 1)  # every weight: u ≤ 1e9 · mean(u)
    kernel = model.get_layer("wide").kernel.numpy()
    assert abs(kernel.std() / np.sqrt(2 / 64) - 1) < 0.02
    assert abs(kernel.mean()) < 4 * kernel.std() / np.sqrt(kernel.size)
    head = model.get_layer("classifier").kernel.numpy()
    assert abs(head.std() / np.sqrt(1 / 256) - 1) < 0.02  # glorot
    gamma = model.get_layer("norm").gamma.numpy()
    np.testing.assert_array_equal(gamma, 1.0 if layer_norm == "pre" else 0.0)
    assert not model.get_layer("wide").bias.numpy().any()


def _wide(layer_norm):
    inputs = keras.Input((64,))
    x = keras.layers.Dense(256, kernel_initializer="he_normal", name="wide")(
        inputs
    )
    if layer_norm == "pre":
        x = keras.layers.LayerNormalization(name="norm")(x)
    else:
        x = ReparamLayerNorm(name="norm")(x)
    outputs = keras.layers.Dense(
        256, kernel_initializer="glorot_normal", name="classifier"
    )(keras.layers.ReLU()(x))
    return inputs, outputs


def test_gradient_utility_is_this_steps_gradient_times_updated_weight():
    x, y = sm.data(n=16)
    model = sm.mlp()
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, True)
        )
    gradients = tape.gradient(loss, model.trainable_variables)
    swr = SelectiveWeightReinit((1000, "steps"), 0.1)
    sm.fit(model, [swr], x, y)
    for variable, gradient, utility in zip(
        swr.variables, gradients, swr.utilities
    ):
        np.testing.assert_allclose(
            utility.numpy(), np.abs(gradient * variable.numpy()), atol=1e-7
        )


@pytest.mark.parametrize("reset_optimizer", [False, True])
def test_untouched_entries_and_slots_match_a_run_without_swr(reset_optimizer):
    x, y = sm.data(n=32)
    plain, model = sm.mlp(), sm.mlp()
    sm.fit(plain, [], x, y)
    swr = SelectiveWeightReinit(
        (2, "steps"), 0.3, reset_optimizer=reset_optimizer
    )
    sm.fit(model, [swr], x, y)  # two steps, SWR after the second
    assert swr.counters()["reinitialized"] > 0
    expected, got = sm.weights(plain), sm.weights(model)
    slots, got_slots = sm.slots(plain), sm.slots(model)
    for variable, utility in zip(swr.variables, swr.utilities):
        chosen = select(utility.numpy(), "threshold", 0.3, None)
        assert chosen.sum() == swr.last_reinitialized[variable.path]
        path = variable.path
        np.testing.assert_array_equal(
            got[path][~chosen], expected[path][~chosen]
        )
        assert (got[path][chosen] != expected[path][chosen]).all() or (
            path.endswith("bias")  # resampled to the initial value 0
        )
        for slot in resets.optimizer_slots(model.optimizer, variable):
            want = slots[slot.name]
            if reset_optimizer:
                want = np.where(chosen, 0.0, want)
            np.testing.assert_array_equal(got_slots[slot.name], want)


def test_running_utility_decays_and_is_zeroed_after_reinit():
    x, y = sm.data(n=48)
    model = sm.mlp()
    seen = []
    snap = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: seen.append(sm.weights(model))
    )
    swr = SelectiveWeightReinit(
        (3, "steps"), 0.5, utility="magnitude", decay=0.9, seed=0
    )
    sm.fit(model, [swr, snap], x, y)  # 3 steps; reinit after the third
    head = "classifier/kernel"
    index = [v.path for v in swr.variables].index(head)
    assert swr.last_reinitialized[head] > 0
    assert not swr.utilities[index].numpy().any()
    swr.every = (1000, "steps")
    sm.fit(model, [swr, snap], x[:16], y[:16])
    np.testing.assert_allclose(
        swr.utilities[index].numpy(), 0.1 * np.abs(seen[-1][head]), rtol=1e-6
    )


def test_same_seed_same_weights_other_seed_differs():
    x, y = sm.data(n=32)

    def run(seed):
        model = sm.mlp()
        swr = SelectiveWeightReinit(
            (1, "steps"), 0.4, pruning="threshold", seed=seed
        )
        sm.fit(model, [swr], x, y)
        return sm.weights(model)["dense0/kernel"]

    first = run(1)
    np.testing.assert_array_equal(first, run(1))
    assert not np.array_equal(first, run(2))


@pytest.mark.parametrize(
    "pruning, factor", [("threshold", 0.3), ("proportional", 0.1)]
)
def test_one_and_two_replicas_agree(pruning, factor):
    x, y = sm.data()
    (one, swr1), (two, swr2) = sm.one_vs_two_replicas(
        sm.mlp,
        lambda: SelectiveWeightReinit(
            (2, "steps"), factor, pruning=pruning, seed=4
        ),
        x,
        y,
    )
    assert swr1.counters() == swr2.counters()
    assert swr1.counters()["reinitialized"] > 0
    for path, value in sm.weights(one).items():
        np.testing.assert_allclose(sm.weights(two)[path], value, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every": (0, "steps"), "factor": 0.1}, "every"),
        ({"every": (1, "steps"), "factor": -1}, "factor = -1"),
        (
            {"every": (1, "steps"), "factor": 2, "pruning": "proportional"},
            "[0, 1]",
        ),
        (
            {"every": (1, "steps"), "factor": 0.1, "utility": "random"},
            "utility",
        ),
        ({"every": (1, "steps"), "factor": 0.1, "reinit": "zero"}, "reinit"),
        ({"every": (1, "steps"), "factor": 0.1, "decay": 1.0}, "decay"),
    ],
)
def test_bad_settings_raise_usage_error(kwargs, match):
    with pytest.raises(UsageError, match=match):
        SelectiveWeightReinit(**kwargs)


def test_unknown_initializer_needs_an_override():
    def build():
        inputs = keras.Input((3,))
        dense = keras.layers.Dense(4, kernel_initializer="orthogonal", name="o")
        return keras.Model(inputs, dense(inputs))

    model = sm.compiled(build)
    with pytest.raises(UsageError, match="init_distributions.*'o/kernel'"):
        SelectiveWeightReinit((1, "steps"), 0.1).set_model(model)
    swr = SelectiveWeightReinit(
        (1, "steps"), 0.1, init_distributions={"o/kernel": ("normal", 0.0, 0.5)}
    )
    swr.set_model(model)
    assert swr.distributions["o/kernel"] == ("normal", 0.0, 0.5)

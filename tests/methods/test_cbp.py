"""Continual Backprop (Nature 2024 Eq. 7–8; reference GnT): running
statistics, maturity, the accumulator, ranking by bias-corrected utility,
what a replacement resets, the working bias correction, seeds and
MirroredStrategy."""

import math

import keras
import numpy as np
import pytest

from tests.methods import step_methods as sm
from zapkeras.errors import UsageError
from zapkeras.methods import resets
from zapkeras.methods.cbp import ContinualBackprop

ETA = 0.99


@pytest.mark.parametrize("utility", ["contribution", "adaptable_contribution"])
def test_statistics_follow_the_reference_update(utility):
    x, y = sm.data(n=16)
    model = sm.mlp()
    h = keras.Model(model.input, model.get_layer("act0").output)(x).numpy()
    cbp = ContinualBackprop(0.1, 100, utility=utility)
    sm.fit(model, [cbp], x, y)  # one step, no unit mature yet
    state = cbp.state["dense0"]
    np.testing.assert_array_equal(state["age"].numpy(), 1)
    f = (1 - ETA) * h.mean(axis=0)
    np.testing.assert_allclose(state["mean_activation"].numpy(), f, atol=1e-7)
    out = np.abs(model.get_layer("dense1").kernel.numpy()).mean(axis=1)
    if utility == "contribution":
        now = out * np.abs(h).mean(axis=0)
    else:
        f_hat = f / (1 - ETA)
        w_in = np.abs(model.get_layer("dense0").kernel.numpy()).mean(axis=0)
        now = out * np.abs(h - f_hat).mean(axis=0) / w_in
    np.testing.assert_allclose(
        state["utility"].numpy(), (1 - ETA) * now, rtol=1e-5, atol=1e-9
    )
    assert cbp.counters()["replaced"] == 0


def test_maturity_and_accumulator():
    x, y = sm.data(n=96)
    model = sm.mlp()
    cbp = ContinualBackprop(0.05, 2, layers=["dense1"])  # 8 units: 0.4/step
    history = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: history.append(
            {k: v.tolist() for k, v in cbp.last_replaced.items()}
        )
    )
    sm.fit(model, [cbp, record], x, y)  # 6 steps
    # eligible from step 3 (age > 2): 0.4, 0.8, 1.2 → one unit at step 5;
    # then 7 eligible: 0.2 + 0.35 = 0.55 after step 6.
    assert [bool(h) for h in history] == [False] * 4 + [True, False]
    (replaced,) = history[4]["dense1"]
    ages = cbp.state["dense1"]["age"].numpy()
    assert ages[replaced] == 1 and np.delete(ages, replaced).tolist() == [6] * 7
    accumulated = cbp.state["dense1"]["accumulated"].numpy()
    assert accumulated == pytest.approx(0.2 + 0.05 * 7)


def test_bernoulli_rounding_without_accumulator():
    model = sm.mlp()
    cbp = ContinualBackprop(0.05, 0, accumulate=False)
    cbp.set_model(model)
    unit = cbp.units[0]
    cbp.state["dense0"]["age"].assign(np.full(8, 5.0, np.float32))
    counts = {
        cbp._choose(unit, np.random.default_rng(seed)).size
        for seed in range(20)
    }
    assert counts == {0, 1}  # 0.4 units due: Bernoulli(0.4)


def test_picks_lowest_bias_corrected_utility():
    model = sm.mlp()
    cbp = ContinualBackprop(0.15, 10)  # 7 eligible: 1.05 units
    cbp.set_model(model)
    state = cbp.state["dense0"]
    # unit 0: u 0.5 but age 11 → û = 0.5 / (1 − 0.99^11) ≈ 4.8
    # unit 1: u 1.0, age 1000 → û ≈ 1.0 (the lowest); unit 7 immature.
    state["age"].assign([11, 1000, 1000, 1000, 1000, 1000, 1000, 3])
    state["utility"].assign([0.5, 1.0, 9, 9, 9, 9, 9, 0.0])
    np.testing.assert_array_equal(cbp._choose(cbp.units[0], None), [1])


def _prepare(cbp, unit, chosen, f_hat):
    state = cbp.state[unit.name]
    age = np.full(unit.num_units, 50.0, np.float32)
    state["age"].assign(age)
    f = np.full(unit.num_units, 0.5, np.float32)
    f[chosen] = f_hat
    f *= 1 - ETA**50
    state["mean_activation"].assign(f)
    state["utility"].assign(np.ones(unit.num_units, np.float32))


@pytest.mark.parametrize("net", ["mlp", "convnet"])
def test_replacement_and_working_bias_correction(net):
    model = sm.mlp(layer_norm="pre") if net == "mlp" else sm.convnet()
    cbp = ContinualBackprop(0.1, 10, seed=3)
    cbp.set_model(model)
    unit = cbp.units[-1]  # dense1 → classifier, or conv2 → flatten → head
    chosen, f_hat = [1, 3], [0.7, 1.9]
    _prepare(cbp, unit, chosen, f_hat)
    norm = unit.norms[0]
    norm.gamma.assign(np.full(norm.gamma.shape, 2.0, np.float32))
    before = sm.weights(model)
    # An activation equal to f̂ at the replaced units, anything elsewhere.
    shape = (1, *unit.output.output.shape[1:])
    h = np.random.default_rng(0).uniform(size=shape).astype(np.float32)
    h[..., chosen] = f_hat
    head = unit.next
    expected = head(keras.layers.Flatten()(h) if net == "convnet" else h)
    cbp._replace(unit, np.array(chosen))
    after = sm.weights(model)
    got = head(keras.layers.Flatten()(h) if net == "convnet" else h)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    kernel = after[unit.layer.kernel.path]
    others = [j for j in range(unit.num_units) if j not in chosen]
    np.testing.assert_array_equal(
        kernel[..., others], before[unit.layer.kernel.path][..., others]
    )
    fan_in = math.prod(kernel.shape[:-1])
    if net == "mlp":  # Kaiming-uniform
        assert np.abs(kernel[..., chosen]).max() <= math.sqrt(6 / fan_in)
    assert not after[unit.layer.bias.path][chosen].any()
    rows = np.reshape(
        after[head.kernel.path],
        (-1, unit.num_units, 5 if net == "convnet" else 10),
    )
    assert not rows[:, chosen].any() and rows[:, others].all()
    np.testing.assert_array_equal(after[norm.gamma.path][chosen], 1.0)
    np.testing.assert_array_equal(after[norm.gamma.path][others], 2.0)
    for key in ("age", "mean_activation", "utility"):
        values = cbp.state[unit.name][key].numpy()
        assert not values[chosen].any() and values[others].all()


@pytest.mark.parametrize("bias_correction", ["reference", False])
def test_reference_bias_correction_adds_nothing(bias_correction):
    model = sm.mlp()
    cbp = ContinualBackprop(0.1, 10, bias_correction=bias_correction)
    cbp.set_model(model)
    unit = cbp.units[1]
    _prepare(cbp, unit, [2], [1.5])
    bias = model.get_layer("classifier").bias
    bias.assign(np.full(10, 0.25, np.float32))
    cbp._replace(unit, np.array([2]))
    np.testing.assert_array_equal(bias.numpy(), 0.25)


@pytest.mark.parametrize("reset_optimizer", [False, True])
def test_optimizer_slots(reset_optimizer):
    x, y = sm.data(n=32)
    model = sm.mlp()
    sm.fit(model, [], x, y)
    cbp = ContinualBackprop(0.1, 10, reset_optimizer=reset_optimizer)
    cbp.set_model(model)
    unit = cbp.units[0]
    _prepare(cbp, unit, [4], [0.1])
    slots = sm.slots(model)
    cbp._replace(unit, np.array([4]))
    after = sm.slots(model)
    touched = {
        slot.name
        for variable in (unit.layer.kernel, unit.layer.bias, unit.next.kernel)
        for slot in resets.optimizer_slots(model.optimizer, variable)
    }
    changed = {k for k in slots if not np.array_equal(slots[k], after[k])}
    assert changed == (touched if reset_optimizer else set())
    if reset_optimizer:
        assert not after["dense0_kernel_momentum"][:, 4].any()
        assert not after["dense1_kernel_velocity"][4].any()
        np.testing.assert_array_equal(
            after["dense1_kernel_velocity"][:4],
            slots["dense1_kernel_velocity"][:4],
        )


def test_same_seed_same_weights_and_replicas_agree():
    x, y = sm.data()

    def make():
        return ContinualBackprop(0.2, 1, seed=7)

    (one, cbp1), (two, cbp2) = sm.one_vs_two_replicas(sm.mlp, make, x, y)
    assert cbp1.counters()["replaced"] == cbp2.counters()["replaced"] > 0
    for path, value in sm.weights(one).items():
        np.testing.assert_allclose(sm.weights(two)[path], value, atol=1e-5)
    again = sm.mlp()
    sm.fit(again, [make()], x, y)
    for path, value in sm.weights(one).items():
        np.testing.assert_array_equal(sm.weights(again)[path], value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"replacement_rate": -0.1}, "replacement_rate"),
        ({"maturity_threshold": -1}, "maturity_threshold"),
        ({"decay_rate": 1.0}, "decay_rate"),
        ({"utility": "weight"}, "utility"),
        ({"bias_correction": "yes"}, "bias_correction"),
        ({"incoming_init": "xavier"}, "incoming_init"),
    ],
)
def test_bad_settings_raise_usage_error(kwargs, match):
    args = {"replacement_rate": 1e-4, "maturity_threshold": 100, **kwargs}
    with pytest.raises(UsageError, match=match):
        ContinualBackprop(**args)
    with pytest.raises(UsageError, match="ContinualBackprop.layers"):
        ContinualBackprop(0.1, 1, layers=["classifier"]).set_model(sm.mlp())

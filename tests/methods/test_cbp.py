"""Continual Backprop (Nature 2024 Eq. 7–8; the paper's GnT and ConvGnT):
running statistics, maturity, the accumulator, ranking by bias-corrected
utility, what a replacement resets, the working bias correction, the conv
forms, seeds and MirroredStrategy."""

import math

import keras
import numpy as np
import pytest

from tests.methods import step_methods as sm
from zapkeras.errors import UsageError
from zapkeras.methods import hooks
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
    # conv_form="units": ConvGnT has no bias correction (tested below).
    cbp = ContinualBackprop(0.1, 10, seed=3, conv_form="units")
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
        ({"conv_form": "channels"}, "conv_form"),
    ],
)
def test_bad_settings_raise_usage_error(kwargs, match):
    args = {"replacement_rate": 1e-4, "maturity_threshold": 100, **kwargs}
    with pytest.raises(UsageError, match=match):
        ContinualBackprop(**args)
    with pytest.raises(UsageError, match="ContinualBackprop.layers"):
        ContinualBackprop(0.1, 1, layers=["classifier"]).set_model(sm.mlp())


# Conv forms. conv0 (4 ch.) → relu0 → pool0 → conv1 (3 ch., ReLU) → flat
# → classifier: conv1 reaches the Dense head over P = 2 × 2 positions.
C0, C1, P = 4, 3, 4


def small_convnet(strategy=None, seed=0):
    def build():
        layers = keras.layers
        x = keras.Input((8, 8, 2))
        h = layers.Conv2D(C0, 3, name="conv0")(x)
        h = layers.ReLU(name="relu0")(h)
        h = layers.MaxPooling2D(2, name="pool0")(h)
        h = layers.Conv2D(C1, 2, activation="relu", name="conv1")(h)
        h = layers.Flatten(name="flat")(h)
        return keras.Model(x, layers.Dense(3, name="classifier")(h))

    return sm.compiled(build, strategy, seed)


def conv_data(n):
    return sm.data(n=n, shape=(8, 8, 2), classes=3)


def _convgnt_count(accumulated, rate, channels, mature):
    """ConvGnT.test_features: rr · channels is added to the accumulator
    only on a step with a mature channel; its whole part is due."""
    if not mature:
        return 0, accumulated
    accumulated += rate * channels
    due = int(accumulated)
    return due, accumulated - due


@pytest.mark.parametrize("rate", [0.3, 0.6])
def test_reference_count_is_convgnt_count_capped_by_maturity(rate):
    model = small_convnet()
    cbp = ContinualBackprop(rate, 10, layers=["conv0"])
    assert cbp.conv_form == "reference"  # the default
    units = ContinualBackprop(rate, 10, layers=["conv0"], conv_form="units")
    cbp.set_model(model)
    units.set_model(model)
    accumulated = units_accumulated = 0.0
    for mature in [0, 4, 3, 1, 1, 0, 2, 4, 1, 1]:
        age = np.where(np.arange(C0) < mature, 1000.0, 1.0)
        for method in (cbp, units):
            method.state["conv0"]["age"].assign(age.astype(np.float32))
            method.state["conv0"]["utility"].assign([0.4, 0.3, 0.2, 0.1])
        due, accumulated = _convgnt_count(accumulated, rate, C0, mature)
        chosen = cbp._choose(cbp.units[0], None)
        assert chosen.size == min(due, mature)  # at most the mature ones
        assert set(chosen) <= set(range(mature))
        assert cbp.state["conv0"]["accumulated"].numpy() == pytest.approx(
            accumulated
        )
        # "units": rr · n_mature, as GnT for a Dense layer.
        if mature:
            units_accumulated += rate * mature
        expected = int(units_accumulated)
        units_accumulated -= expected
        assert units._choose(units.units[0], None).size == expected
    if rate == 0.6:  # 2.4 due with 1 mature channel: capped
        assert _convgnt_count(0.0, rate, C0, 1)[0] == 2


@pytest.mark.parametrize(
    "conv_form, counts", [("reference", [0, 2, 2, 2]), ("units", [0, 2, 1, 1])]
)
def test_replaced_per_step_in_training(conv_form, counts):
    # maturity 1, rr 0.5: all 4 mature at step 2; 2 of them at step 3 and
    # (the ones replaced at step 2) at step 4; "units" replaces 0.5 of
    # the mature ones (2, then 1 of 2, then 1.5 of 3).
    x, y = conv_data(64)
    model = small_convnet()
    cbp = ContinualBackprop(0.5, 1, layers=["conv0"], conv_form=conv_form)
    history = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: history.append(
            len(cbp.last_replaced.get("conv0", []))
        )
    )
    sm.fit(model, [cbp, record], x, y)  # 4 steps
    assert history == counts
    assert cbp.counters()["replaced"] == sum(counts)


def _tap(model, name, x):
    return keras.Model(model.input, model.get_layer(name).output)(x).numpy()


@pytest.mark.parametrize("utility", ["contribution", "adaptable_contribution"])
def test_conv_statistics_of_both_forms(utility):
    x, y = conv_data(16)
    got = {}
    for conv_form in ("reference", "units"):
        model = small_convnet()
        taps = {n: _tap(model, n, x) for n in ("relu0", "pool0", "flat")}
        cbp = ContinualBackprop(0.1, 100, utility=utility, conv_form=conv_form)
        sm.fit(model, [cbp], x, y)  # one step
        got[conv_form] = cbp, model, taps
    cbp, model, taps = got["reference"]
    # The activations read are those the next layer reads: after pooling.
    assert [layer.name for layer in cbp.observed] == ["pool0", "flat"]
    assert [layer.name for layer in got["units"][0].observed] == [
        "relu0",
        "conv1",
    ]
    pooled, relu = taps["pool0"], taps["relu0"]
    for form, h in (("reference", pooled), ("units", relu)):
        f = got[form][0].state["conv0"]["mean_activation"].numpy()
        np.testing.assert_allclose(f, (1 - ETA) * h.mean((0, 1, 2)), rtol=1e-5)
    assert not np.allclose(pooled.mean((0, 1, 2)), relu.mean((0, 1, 2)))
    # conv1 → flat → classifier: mean over positions of |W_out| · |h|.
    h = taps["flat"].reshape(16, P, C1)
    f_hat = h.mean((0, 1))
    deviation = np.abs(h - f_hat) if utility != "contribution" else np.abs(h)
    per_form = {}
    for form in ("reference", "units"):
        cbp, model, _ = got[form]
        w_out = np.abs(model.get_layer("classifier").kernel.numpy())
        w_out = w_out.reshape(P, C1, -1).mean(axis=2)  # [P, C1]
        if form == "reference":
            now = (w_out * deviation.mean(axis=0)).mean(axis=0)
        else:  # product of the means
            now = w_out.mean(axis=0) * deviation.mean(axis=(0, 1))
        if utility == "adaptable_contribution":
            w_in = np.abs(model.get_layer("conv1").kernel.numpy())
            now /= w_in.mean(axis=(0, 1, 2))
        per_form[form] = cbp.state["conv1"]["utility"].numpy()
        np.testing.assert_allclose(
            per_form[form], (1 - ETA) * now, rtol=1e-5, atol=1e-9
        )
    assert not np.allclose(per_form["reference"], per_form["units"])


def test_reference_ranks_by_the_mean_of_products():
    # Channel 0 is large where its outgoing weights are small: a mean of
    # products of 0.1, but a product of means of 0.775 (channel 1: 0.5).
    model = small_convnet()
    signs = np.where(np.arange(P * C1 * 3) % 2, -1.0, 1.0).reshape(P, C1, 3)
    magnitude = np.ones((P, C1, 1))
    magnitude[:, 0, 0] = [0.1, 1, 1, 1]
    magnitude[:, 1, 0] = 0.5
    kernel = (signs * magnitude).reshape(P * C1, 3).astype(np.float32)
    model.get_layer("classifier").kernel.assign(kernel)
    h = np.zeros((P, C1), np.float32)
    h[:, 0] = [4, 0, 0, 0]
    h[:, 1], h[:, 2] = 1.0, 2.0
    batch = np.tile(h.reshape(1, P * C1), (2, 1))  # as Flatten gives it
    expected = {"reference": [0.1, 0.5, 2.0], "units": [0.775, 0.5, 2.0]}
    for conv_form, lowest in (("reference", 0), ("units", 1)):
        cbp = ContinualBackprop(0.34, 10, layers=["conv1"], conv_form=conv_form)
        cbp.set_model(model)
        (read,) = cbp.observed
        tapped = (
            batch if conv_form == "reference" else batch.reshape(2, 2, 2, 3)
        )
        cbp.observe(
            hooks.StepData(None, None, None, [], None, {read.name: tapped})
        )
        utility = cbp.state["conv1"]["utility"].numpy()
        np.testing.assert_allclose(
            utility, (1 - ETA) * np.array(expected[conv_form]), rtol=1e-6
        )
        cbp.state["conv1"]["age"].assign(np.full(C1, 1000.0, np.float32))
        np.testing.assert_array_equal(cbp._choose(cbp.units[0], None), [lowest])


def test_reference_replacement_draws_convgnt_filters_without_correction():
    model = small_convnet()
    for layer in ("conv0", "conv1", "classifier"):
        bias = model.get_layer(layer).bias
        bias.assign(np.full(bias.shape, 0.3, np.float32))
    cbp = ContinualBackprop(0.1, 10, seed=5)  # bias_correction=True
    cbp.set_model(model)
    for unit, chosen in zip(cbp.units, ([0, 2], [1])):
        _prepare(cbp, unit, chosen, [1.5] * len(chosen))
        before = sm.weights(model)
        cbp._replace(unit, np.array(chosen))
        after = sm.weights(model)
        kernel = after[unit.layer.kernel.path]
        bound = math.sqrt(1.0 / math.prod(kernel.shape[:-1]))
        fresh = np.abs(kernel[..., chosen])
        assert fresh.max() <= bound and fresh.max() > bound / 2
        others = [j for j in range(unit.num_units) if j not in chosen]
        np.testing.assert_array_equal(
            kernel[..., others], before[unit.layer.kernel.path][..., others]
        )
        bias = after[unit.layer.bias.path]
        assert not bias[chosen].any() and (bias[others] == 0.3).all()
        rows = after[unit.next.kernel.path]
        rows = rows.reshape(-1, unit.num_units, rows.shape[-1])
        assert not rows[:, chosen].any() and rows[:, others].all()
        # ConvGnT has no bias correction: the next bias stays.
        np.testing.assert_array_equal(
            after[unit.next.bias.path], before[unit.next.bias.path]
        )
        state = cbp.state[unit.name]
        assert not state["age"].numpy()[chosen].any()


def test_reference_conv_replicas_agree():
    x, y = conv_data(64)

    def make():
        return ContinualBackprop(0.5, 1, seed=2)

    (one, cbp1), (two, cbp2) = sm.one_vs_two_replicas(small_convnet, make, x, y)
    assert cbp1.counters()["replaced"] == cbp2.counters()["replaced"] > 0
    for path, value in sm.weights(one).items():
        np.testing.assert_allclose(sm.weights(two)[path], value, atol=1e-5)


def test_dense_layers_of_a_conv_network_count_as_convgnt_linear_layers():
    def build():
        x = keras.Input((8, 8, 2))
        h = keras.layers.Conv2D(C0, 3, activation="relu", name="conv0")(x)
        h = keras.layers.Flatten(name="flat")(h)
        h = keras.layers.Dense(5, activation="relu", name="hidden")(h)
        return keras.Model(x, keras.layers.Dense(3, name="classifier")(h))

    chosen = {}
    for conv_form in ("reference", "units"):
        cbp = ContinualBackprop(0.3, 10, conv_form=conv_form)
        cbp.set_model(sm.compiled(build))
        hidden = cbp.units[-1]
        assert hidden.name == "hidden"
        cbp.state["hidden"]["age"].assign([1000.0, 1000.0, 1.0, 1.0, 1.0])
        chosen[conv_form] = cbp._choose(hidden, None).size
    # ConvGnT: rr · 5 units = 1.5 due; GnT: rr · 2 mature = 0.6.
    assert chosen == {"reference": 1, "units": 0}
    mlp_cbp = ContinualBackprop(0.3, 10)
    mlp_cbp.set_model(sm.mlp())
    assert not mlp_cbp.conv_gnt  # an MLP is GnT's under both forms

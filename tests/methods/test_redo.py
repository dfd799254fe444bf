"""ReDo (Sokar et al. 2023; dopamine NeuronRecycler): τ-dormant scores,
exactly the dormant units' incoming weights resampled, outgoing weights and
optimizer moments zeroed, the classifier's units never recycled, conv
channels through Flatten, seeds and MirroredStrategy."""

import keras
import numpy as np
import pytest

from tests.methods import step_methods as sm
from zapkeras.errors import UsageError
from zapkeras.methods import resets
from zapkeras.methods.redo import ReDo
from zapkeras.methods.redo import dormant


def test_dormant_scores_are_relative_to_the_layer_mean():
    scores = [0.0, 1.0, 2.0, 0.01]  # mean 0.7525
    np.testing.assert_array_equal(dormant(scores, 0.025), [1, 0, 0, 1])
    np.testing.assert_array_equal(dormant(scores, 0.0), [1, 0, 0, 0])
    np.testing.assert_array_equal(dormant(scores, 1.32), [1, 0, 0, 1])
    np.testing.assert_array_equal(dormant(scores, 1.34), [1, 1, 0, 1])


def _dead_units_mlp():
    model = sm.mlp()
    bias = np.zeros(8, np.float32)
    bias[[2, 5]] = -100.0  # ReLU output exactly 0 on any input
    model.get_layer("dense0").bias.assign(bias)
    return model


def _changed_columns(a, b):
    return np.flatnonzero(np.any(a != b, axis=tuple(range(a.ndim - 1))))


def test_batch_statistics_recycle_exactly_the_dead_units():
    x, y = sm.data(n=32)
    plain, model = _dead_units_mlp(), _dead_units_mlp()
    sm.fit(plain, [], x, y)
    redo = ReDo((2, "steps"), 0.0, seed=1)
    sm.fit(model, [redo], x, y)  # recycling after the second step
    assert {k: v.tolist() for k, v in redo.last_dormant.items()} == {
        "dense0": [2, 5],
        "dense1": [],
    }
    counters = redo.counters()
    assert counters["dormant_fraction"] == counters["zero_fraction"] == 2 / 16
    want, got = sm.weights(plain), sm.weights(model)
    kernel = "dense0/kernel"
    np.testing.assert_array_equal(
        _changed_columns(want[kernel], got[kernel]), [2, 5]
    )
    np.testing.assert_array_equal(got["dense0/bias"][[2, 5]], 0.0)
    np.testing.assert_array_equal(got["dense1/kernel"][[2, 5]], 0.0)
    want["dense0/kernel"][:, [2, 5]] = got["dense0/kernel"][:, [2, 5]]
    want["dense0/bias"][[2, 5]] = 0.0
    want["dense1/kernel"][[2, 5]] = 0.0
    for path in want:  # everything else, the classifier too, bit-identical
        np.testing.assert_array_equal(got[path], want[path])


def test_fixed_batch_statistics_zero_the_moments_of_recycled_entries():
    x, y = sm.data(n=32)
    probe = np.zeros((4, 6), np.float32)  # activations = relu(bias)
    models = []
    for _ in range(2):
        model = sm.mlp()
        bias = np.where(np.arange(8) % 3 == 0, -0.5, 0.5).astype(np.float32)
        model.get_layer("dense0").bias.assign(bias)
        models.append(model)
    plain, model = models
    sm.fit(plain, [], x, y)
    redo = ReDo((2, "steps"), 0.1, statistics=probe, seed=1)
    sm.fit(model, [redo], x, y)
    expected = {}
    for name, act in (("dense0", "act0"), ("dense1", "act1")):
        h = keras.Model(plain.input, plain.get_layer(act).output)(probe)
        expected[name] = np.flatnonzero(dormant(np.abs(h).mean(axis=0), 0.1))
        np.testing.assert_array_equal(redo.last_dormant[name], expected[name])
    assert expected["dense0"].size and expected["dense1"].size
    want, got = sm.slots(plain), sm.slots(model)
    for name, next_name in (("dense0", "dense1"), ("dense1", "classifier")):
        units = expected[name]
        layer, after = model.get_layer(name), model.get_layer(next_name)
        for variable, axis in (
            (layer.kernel, -1),
            (layer.bias, -1),
            (after.kernel, 0),
        ):
            for slot in resets.optimizer_slots(model.optimizer, variable):
                array = want[slot.name]
                assert np.take(array, units, axis).any()  # real Adam state
                index = [slice(None)] * array.ndim
                index[axis] = units
                array[tuple(index)] = 0.0
    for name, array in want.items():  # the rest bit-identical
        np.testing.assert_array_equal(got[name], array)
    head = sm.weights(model)["classifier/kernel"]
    want = sm.weights(plain)["classifier/kernel"]
    want[expected["dense1"]] = 0.0
    np.testing.assert_array_equal(head, want)  # its columns never recycled


def test_conv_channels_and_their_flattened_outgoing_rows():
    images = np.random.default_rng(0).normal(size=(8, 28, 28, 1))
    images, labels = images.astype(np.float32), np.arange(8) % 5
    plain, model = sm.convnet(), sm.convnet()
    sm.fit(plain, [], images, labels, batch_size=8)
    redo = ReDo(
        (1, "steps"), 1.0, layers=["conv2"], seed=2
    )  # below-average channels
    sm.fit(model, [redo], images, labels, batch_size=8)
    channels = redo.last_dormant["conv2"]
    assert 0 < channels.size < 4
    want, got = sm.weights(plain), sm.weights(model)
    np.testing.assert_array_equal(
        _changed_columns(want["conv2/kernel"], got["conv2/kernel"]), channels
    )
    rows = np.isin(np.arange(36) % 4, channels)
    assert not got["classifier/kernel"][rows].any()
    np.testing.assert_array_equal(
        got["classifier/kernel"][~rows], want["classifier/kernel"][~rows]
    )
    for path in ("conv0/kernel", "conv1/kernel", "classifier/bias"):
        np.testing.assert_array_equal(got[path], want[path])


def test_same_seed_same_weights_and_replicas_agree():
    x, y = sm.data()

    def make():
        return ReDo((2, "steps"), 0.5, seed=5)

    (one, redo1), (two, redo2) = sm.one_vs_two_replicas(sm.mlp, make, x, y)
    assert redo1.counters() == redo2.counters()
    assert redo1.counters()["dormant_fraction"] > 0
    for path, value in sm.weights(one).items():
        np.testing.assert_allclose(sm.weights(two)[path], value, atol=1e-5)
    again = sm.mlp()
    sm.fit(again, [make()], x, y)
    for path, value in sm.weights(one).items():
        np.testing.assert_array_equal(sm.weights(again)[path], value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every": (0, "steps")}, "every"),
        ({"threshold": -0.1}, "threshold"),
        ({"statistics": "replay"}, "statistics"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_settings_raise_usage_error(kwargs, match):
    args = {"every": (10, "steps"), "threshold": 0.025, **kwargs}
    with pytest.raises(UsageError, match=match):
        ReDo(**args)


def _dead_through_layer_norm(reset_norms):
    """A 'pre'-LayerNorm MLP whose unit 3 of dense0 is dead only through its
    LayerNorm (γ 0, β −100 → ReLU 0), one ReDo step at τ = 0."""
    x, y = sm.data(n=16)
    model = sm.mlp(layer_norm="pre")
    norm = model.get_layer("norm0")
    gamma, beta = norm.gamma.numpy(), norm.beta.numpy()
    gamma[3], beta[3] = 0.0, -100.0
    norm.gamma.assign(gamma)
    norm.beta.assign(beta)
    redo = ReDo((1, "steps"), 0.0, seed=1, reset_norms=reset_norms)
    sm.fit(model, [redo], x, y)
    act = keras.Model(model.input, model.get_layer("act0").output)
    activity = np.abs(act.predict(x, verbose=0)).mean(axis=0)
    return redo, norm, activity


def test_a_unit_dead_through_its_layer_norm_is_recycled_with_its_entries():
    redo, norm, activity = _dead_through_layer_norm(reset_norms=True)
    assert redo.last_dormant["dense0"].tolist() == [3]
    assert norm.gamma.numpy()[3] == 1.0 and norm.beta.numpy()[3] == 0.0
    assert activity[3] > 0.0  # alive again, as the SWR code's ReDoLinear
    kept, kept_norm, kept_activity = _dead_through_layer_norm(False)
    assert kept.last_dormant["dense0"].tolist() == [3]
    assert kept_norm.gamma.numpy()[3] == 0.0
    assert kept_norm.beta.numpy()[3] == -100.0
    assert kept_activity[3] == 0.0  # dopamine's ReDo: stays dead
    others = np.arange(8) != 3  # the other entries trained identically
    np.testing.assert_array_equal(
        norm.gamma.numpy()[others], kept_norm.gamma.numpy()[others]
    )

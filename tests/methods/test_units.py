"""Finding hidden unit layers (chains, conv → flatten → dense, residual
blocks) and resetting exactly a unit's incoming and outgoing weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods as sm
from zapkeras.errors import UsageError
from zapkeras.methods import resets
from zapkeras.methods import units


def _summary(found):
    return [
        (u.name, u.output.name, [n.name for n in u.norms], u.next.name)
        for u in found
    ]


@pytest.mark.parametrize(
    "layer_norm, norms", [(None, False), ("pre", True), ("post", True)]
)
def test_mlp_units(layer_norm, norms):
    found = units.unit_layers(sm.mlp(layer_norm=layer_norm))
    assert _summary(found) == [
        ("dense0", "act0", ["norm0"] if norms else [], "dense1"),
        ("dense1", "act1", ["norm1"] if norms else [], "classifier"),
    ]


def test_convnet_units_and_spatial_outgoing_mask():
    model = sm.convnet()
    found = units.unit_layers(model)
    assert _summary(found) == [
        ("conv0", "relu0", ["norm0"], "conv1"),
        ("conv1", "relu1", ["norm1"], "conv2"),
        ("conv2", "relu2", ["norm2"], "classifier"),
    ]
    head = model.get_layer("classifier").kernel  # [3·3·4, 5]
    mask = units.outgoing_mask(head, tf.constant([False, True, False, True]))
    rows = np.flatnonzero(mask.numpy().all(axis=1))
    np.testing.assert_array_equal(
        rows, [r for r in range(36) if r % 4 in (1, 3)]
    )
    assert mask.numpy().any(axis=1).sum() == len(rows)
    conv = units.outgoing_mask(
        model.get_layer("conv2").kernel,
        tf.constant([True, False, False, False]),
    ).numpy()
    assert conv[:, :, 0].all() and not conv[:, :, 1:].any()


def _residual():
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    stem = keras.layers.ReLU(name="stem_relu")(stem)
    x = keras.layers.Conv2D(4, 3, padding="same", name="inner")(stem)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="inner_relu")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="last")(x)
    x = keras.layers.Add(name="add")([x, stem])
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="classifier")(x)
    return keras.Model(inputs, outputs)


def test_residual_block_keeps_only_unambiguous_layers():
    model = _residual()
    assert _summary(units.unit_layers(model)) == [
        ("inner", "inner_relu", ["bn"], "last")
    ]
    with pytest.raises(UsageError, match="'stem'.*feeds several layers"):
        units.unit_layers(model, ["inner", "stem"], "ReDo.layers")
    with pytest.raises(UsageError, match="'last'.*'add'"):
        units.unit_layers(model, ["last"])
    with pytest.raises(UsageError, match="classifier.*not a hidden"):
        units.unit_layers(model, ["classifier"])


def test_unsupported_models_raise():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3)))
    with pytest.raises(UsageError, match="functional or Sequential"):
        units.unit_layers(net)
    inputs = keras.Input((4,))
    lonely = keras.Model(
        inputs, keras.layers.Dense(2, name="classifier")(inputs)
    )
    with pytest.raises(UsageError, match="no hidden"):
        units.unit_layers(lonely)


def test_reset_touches_exactly_the_units_entries():
    x, y = sm.data()
    model = sm.mlp(layer_norm="pre")
    sm.fit(model, [], x, y)  # real Adam moments
    unit = units.unit_layers(model)[0]  # dense0 → norm0 → act0 → dense1
    unit.layer.bias.assign(np.full(8, 0.5, np.float32))
    norm = unit.norms[0]
    norm.gamma.assign(np.full(8, 2.0, np.float32))
    norm.beta.assign(np.full(8, 0.3, np.float32))
    weights, slots = sm.weights(model), sm.slots(model)
    mask = np.zeros(8, bool)
    mask[[2, 5]] = True
    incoming = tf.fill(unit.layer.kernel.shape, 7.0)
    units.reset(
        unit, tf.constant(mask), incoming, optimizer=model.optimizer, norms=True
    )
    after, after_slots = sm.weights(model), sm.slots(model)
    changed = {p for p in weights if not np.array_equal(weights[p], after[p])}
    assert changed == {
        "dense0/kernel",
        "dense0/bias",
        "dense1/kernel",
        "norm0/gamma",
        "norm0/beta",
    }
    assert (after["dense0/kernel"][:, mask] == 7).all()
    assert (after["dense0/bias"][mask] == 0).all()
    assert (after["dense1/kernel"][mask] == 0).all()
    assert (after["norm0/gamma"][mask] == 1).all()
    assert (after["norm0/beta"][mask] == 0).all()
    keep = ~mask
    for path in changed:
        axis = 0 if path == "dense1/kernel" else -1
        np.testing.assert_array_equal(
            np.compress(keep, weights[path], axis),
            np.compress(keep, after[path], axis),
        )
    zeroed = {n for n in slots if not np.array_equal(slots[n], after_slots[n])}
    expected = set()
    for variable in (unit.layer.kernel, unit.layer.bias, unit.next.kernel):
        expected |= {
            s.name for s in resets.optimizer_slots(model.optimizer, variable)
        }
    assert zeroed == expected
    assert not after_slots["dense1_kernel_momentum"][mask].any()
    assert after_slots["dense1_kernel_momentum"][keep].all()

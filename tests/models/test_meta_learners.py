"""ANML and OML (frati2024's meta-learning baselines): the architectures'
feature sizes and gating, and that an inner loop restricted to their
inner-layer prefixes adapts those weights only."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zapkeras.errors import UsageError
from zapkeras.methods.asb import ASB
from zapkeras.methods.asb import episode_batches
from zapkeras.models import meta_learners
from zapkeras.protocols.pretrain import _layer_prefixes


def test_anml_gates_2304_rln_features_with_a_sigmoid_nm():
    model = meta_learners.anml(1000)
    assert model.get_layer("rln_features").output.shape[-1] == 2304
    assert model.get_layer("nm_features").output.shape[-1] == 112  # 1×1
    assert model.get_layer("nm_gate").kernel.shape == (112, 2304)
    assert model.get_layer("classifier").kernel.shape == (2304, 1000)
    small = meta_learners.anml(5, width=4, nm_width=3)
    x = np.random.default_rng(0).random((2, 28, 28, 1), np.float32)
    probe = keras.Model(
        small.input,
        [
            small.get_layer(n).output
            for n in ("rln_features", "nm_gate", "features")
        ],
    )
    rln, gate, features = (t.numpy() for t in probe(x))
    assert 0 < gate.min() and gate.max() < 1
    np.testing.assert_allclose(features, rln * gate, rtol=1e-6)


def test_oml_has_six_strided_convs_to_2304_features_and_a_two_layer_pln():
    model = meta_learners.oml(1000)
    convs = [x for x in model.layers if isinstance(x, keras.layers.Conv2D)]
    assert [c.strides[0] for c in convs] == [2, 1, 2, 1, 2, 2]
    assert model.get_layer("features").output.shape[-1] == 2304
    assert model.get_layer("pln_dense").units == 1024


def test_sizes_other_than_the_papers_are_usage_errors():
    with pytest.raises(UsageError, match="anml.image_size"):
        meta_learners.anml(10, image_size=84)
    with pytest.raises(UsageError, match="oml.image_size"):
        meta_learners.oml(10, image_size=28)


def test_anml_inner_loop_leaves_the_neuromodulator_alone():
    """Outer rate 0: what moves is the inner loop's doing, and only the
    RLN and classifier move (reference `train-omni-anml.yml`)."""
    keras.utils.set_random_seed(0)
    model = meta_learners.anml(4, width=3, nm_width=2)
    wrapper = ASB(
        model,
        0.5,
        zap=False,
        inner_variables=_layer_prefixes(meta_learners.ANML_INNER),
    )
    wrapper.compile(optimizer=keras.optimizers.SGD(0.0))
    before = {v.path: v.numpy() for v in model.trainable_variables}
    rng = np.random.default_rng(0)
    episode = {
        "inner_x": rng.random((1, 3, 28, 28, 1), np.float32),
        "inner_y": np.full((1, 3), 1, np.int32),
        "remember_x": rng.random((1, 2, 28, 28, 1), np.float32),
        "remember_y": np.array([[0, 2]], np.int32),
    }
    data = tf.data.Dataset.from_tensor_slices(episode)
    wrapper.fit(episode_batches(data, 1), verbose=0)
    moved = {
        v.path
        for v in model.trainable_variables
        if not np.array_equal(v.numpy(), before[v.path])
    }
    assert moved and all(p.startswith(("rln_", "classifier")) for p in moved)
    assert "classifier/kernel" in moved and "rln_conv0/kernel" in moved

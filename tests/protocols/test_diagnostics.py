"""Plasticity diagnostics on constructed activations and weights, and the
accuracy-matrix metrics on a hand-made matrix."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zapkeras.models import mlp
from zapkeras.protocols import diagnostics


def _matrix_with_singular_values(values, shape=(40, 12), seed=0):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((shape[0], shape[0])))
    v, _ = np.linalg.qr(rng.standard_normal((shape[1], shape[1])))
    s = np.zeros(shape)
    s[: len(values), : len(values)] = np.diag(values)
    return u @ s @ v.T


@pytest.mark.parametrize(
    "values, expected",
    [
        ([5.0, 3.0, 2.0], 3),  # rank 3: all three needed for 99 %
        ([100.0, 0.5, 0.4], 1),  # 100 / 100.9 ≥ 0.99
        ([50.0, 49.0, 1.0], 2),  # 99 / 100 = 0.99 exactly
        ([1.0] * 12, 12),
    ],
)
def test_stable_rank_of_known_spectra(values, expected):
    features = _matrix_with_singular_values(values)
    assert diagnostics.stable_rank(features) == expected


def test_stable_rank_of_zero_features_is_zero():
    assert diagnostics.stable_rank(np.zeros((5, 3))) == 0


def test_dead_and_dormant_fractions():
    maxes = [np.array([0.0, 1.0, 0.0, 2.0]), np.array([0.0, 3.0])]
    assert diagnostics.dead_fraction(maxes) == pytest.approx(3 / 6)
    # layer means: [0, 0.1, 1, 2.9] (mean 1) and [0.02, 1.98] (mean 1)
    means = [np.array([0.0, 0.1, 1.0, 2.9]), np.array([0.02, 1.98])]
    assert diagnostics.dormant_fraction(means, 0.025) == pytest.approx(2 / 6)
    assert diagnostics.dormant_fraction(means, 0.1) == pytest.approx(3 / 6)
    assert diagnostics.dormant_fraction(means, 0.0) == pytest.approx(1 / 6)


def test_weight_statistics():
    variables = [np.array([[1.0, -2.0]]), np.array([3.0, 0.0, -1.0, 0.0])]
    initial = [np.array([[0.0, 0.0]]), np.array([3.0, 0.0, 1.0, 0.0])]
    stats = diagnostics.weight_statistics(variables, initial)
    assert stats["mean_abs_weight"] == pytest.approx(7 / 6)
    # lee2024: Σ_v mean((v − v0)²) = (1 + 4) / 2 + 4 / 4
    assert stats["distance_from_init"] == pytest.approx(3.5)


def test_layer_norm_scale_is_the_effective_scale():
    assert diagnostics.layer_norm_scale(mlp(3, input_shape=(4,))) is None
    post = mlp(3, input_shape=(4,), width=5, layer_norm="post")
    post.get_layer("norm0").gamma.assign(-2.0 * np.ones(5))
    # norm0 |γ| = 2, norm1 γ = 1
    assert diagnostics.layer_norm_scale(post) == pytest.approx(1.5)
    reparam = mlp(3, input_shape=(4,), width=5, layer_norm="reparam")
    reparam.get_layer("norm1").gamma.assign(-3.0 * np.ones(5))
    # |1 + 0| and |1 − 3|
    assert diagnostics.layer_norm_scale(reparam) == pytest.approx(1.5)


def _probe_model():
    """x → Dense(4) → ReLU → Dense(3, classifier) with units 2 and 3 dead
    (negative bias on non-negative inputs)."""
    model = mlp(3, input_shape=(2,), width=4, depth=1)
    dense = model.get_layer("dense0")
    dense.kernel.assign([[1.0, 0.5, -1.0, 0.0], [0.5, 1.0, -1.0, 0.0]])
    dense.bias.assign([0.0, 0.0, 0.0, -1.0])
    return model


def _cross_entropy(y, logits):
    return keras.losses.sparse_categorical_crossentropy(
        y, logits, from_logits=True
    )


def test_probe_measures_dead_units_rank_and_gradients():
    model = _probe_model()
    rng = np.random.default_rng(0)
    x = rng.random((7, 2)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0], np.int32)
    probe = diagnostics.Probe(model, _cross_entropy, chunk=3)
    assert probe.layer_names == ["act0"]
    result = probe.measure(x, y, tau=0.025)
    assert result["dead_fraction"] == pytest.approx(0.5)
    assert result["dormant_fraction"] == pytest.approx(0.5)
    hidden = np.maximum(x @ model.get_layer("dense0").kernel.numpy(), 0)
    assert result["stable_rank/act0"] == diagnostics.stable_rank(hidden)
    assert result["feature_srank"] == result["stable_rank/act0"] == 2
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(_cross_entropy(y, model(x)))
    grads = tape.gradient(loss, model.trainable_variables)
    entries = sum(int(np.prod(g.shape)) for g in grads)
    magnitude = sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) / entries
    zeros = sum(int(tf.reduce_sum(tf.cast(g == 0, tf.int32))) for g in grads)
    assert result["gradient_magnitude"] == pytest.approx(magnitude, rel=1e-5)
    assert result["zero_gradient_fraction"] == pytest.approx(zeros / entries)
    # the dead units' incoming weights, biases and outgoing rows get no
    # gradient: 2 units × (2 in + 1 bias + 3 out) of 27 entries
    assert zeros == 12 and entries == 27


def test_transfer_metrics_on_a_hand_made_matrix():
    a = [
        [0.9, 0.1, 0.2],
        [0.6, 0.8, 0.3],
        [0.5, 0.7, 0.95],
    ]
    metrics = diagnostics.transfer_metrics(a, init_accuracy=[0.1, 0.1, 0.1])
    assert metrics["average_accuracy"] == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    # BWT = mean(a[2][j] − a[j][j]) over j < 2
    assert metrics["backward_transfer"] == pytest.approx(
        ((0.5 - 0.9) + (0.7 - 0.8)) / 2
    )
    # forgetting = mean(max_{j≤l<2} a[l][j] − a[2][j])
    assert metrics["forgetting"] == pytest.approx(
        ((0.9 - 0.5) + (0.8 - 0.7)) / 2
    )
    # FWT = mean(a[j−1][j] − b_j) over j ≥ 1
    assert metrics["forward_transfer"] == pytest.approx(
        ((0.1 - 0.1) + (0.3 - 0.1)) / 2
    )


def test_transfer_metrics_with_unmeasured_future_entries():
    a = [[0.9, None], [0.4, 0.8]]
    metrics = diagnostics.transfer_metrics(a)
    assert metrics["backward_transfer"] == pytest.approx(-0.5)
    assert metrics["forgetting"] == pytest.approx(0.5)
    assert "forward_transfer" not in metrics
    assert diagnostics.transfer_metrics([[0.7]]) == {"average_accuracy": 0.7}

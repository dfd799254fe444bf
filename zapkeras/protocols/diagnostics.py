"""Plasticity diagnostics and continual-learning metrics.

Measured on a fixed probe batch (hernandez-garcia2025 App. C; lee2024
App. C; the reference codes' definitions where the papers are terse):

- dead-unit fraction: hidden units (every activation layer, a conv
  channel counts once) whose output is exactly 0 on every probe input;
- τ-dormant fraction (Sokar et al. 2023, ReDo): s_j = mean|h_j| / mean_k
  mean|h_k| within a layer, dormant iff s_j ≤ τ;
- stable rank of each 2-D hidden activation and `feature_srank` of the
  classifier's input: the smallest k with Σ_{i≤k} σ_i ≥ 0.99 Σ_i σ_i
  (Kumar et al. 2021's srank, δ = 0.01; the SWR code's "stable rank");
- mean |w| over all trainable entries (SWR code), distance from init
  Σ_v mean((v − v₀)²) per variable v (lee2024 App. C), LayerNorm scale
  mean (|γ|, or |1 + γ| for the reparameterised LayerNorm);
- gradient magnitude Σ|g| / #entries and zero-gradient fraction #(g = 0) /
  #entries of the probe loss over every trainable variable (SWR and H&T
  codes).

Accuracy-matrix metrics, a[i][j] = accuracy on task j after task i:
average accuracy (1/T) Σ_j a[T−1][j] and backward / forward transfer of
Lopez-Paz & Ranzato (2017, GEM §4), forgetting of Chaudhry et al. (2018,
RWalk §4.1): the mean over j < T−1 of max_{j≤l<T−1} a[l][j] − a[T−1][j].
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zapkeras import compat
from zapkeras import compile_options
from zapkeras.models.layers import ReparamLayerNorm


def stable_rank(features, prop=0.99):
    """srank of a [N, d] matrix: min k with Σ_{i≤k} σ_i ≥ prop · Σ σ."""
    sv = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
    total = sv.sum()
    if total <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(sv) / total, prop - 1e-12) + 1)


def dead_fraction(unit_max):
    """Fraction of units whose max |activation| over the probe is 0.

    `unit_max` is a list (one per layer) of [units] arrays."""
    units = np.concatenate([np.ravel(m) for m in unit_max])
    return float(np.mean(units == 0)) if units.size else 0.0


def dormant_fraction(unit_mean, tau):
    """ReDo's τ-dormant fraction from per-layer [units] mean |activation|."""
    dormant = [
        np.asarray(m) / (np.mean(m) + 1e-9) <= tau for m in unit_mean if len(m)
    ]
    return float(np.mean(np.concatenate(dormant))) if dormant else 0.0


def weight_statistics(variables, initial):
    """mean |w| and lee2024's distance from init over trainable variables."""
    values = [np.asarray(v) for v in variables]
    entries = sum(v.size for v in values)
    return {
        "mean_abs_weight": float(
            sum(np.abs(v).sum() for v in values) / max(entries, 1)
        ),
        "distance_from_init": float(
            sum(
                np.mean((v - np.asarray(w0)) ** 2)
                for v, w0 in zip(values, initial)
            )
        ),
    }


def layer_norm_scale(model):
    """Mean effective LayerNorm scale, or None without LayerNorms."""
    scales = []
    for layer in compat.flatten_layers(model, include_self=False):
        if isinstance(layer, ReparamLayerNorm):
            scales.append(np.abs(1.0 + np.asarray(layer.gamma)).ravel())
        elif isinstance(layer, keras.layers.LayerNormalization) and layer.scale:
            scales.append(np.abs(np.asarray(layer.gamma)).ravel())
    return float(np.concatenate(scales).mean()) if scales else None


def _is_activation(layer):
    if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU)):
        return True
    activation = getattr(layer, "activation", None)
    return (
        layer.name != "classifier"
        and callable(activation)
        and activation is not keras.activations.linear
    )


class Probe:
    """Hidden activations, features and loss gradients on a probe batch.

    The probe network shares the model's layers and returns every hidden
    activation layer's output, the classifier's input and the logits; one
    compiled step per chunk computes them and the gradient of the mean
    probe loss `loss_fn(y, logits)` (per-example), in inference mode.
    """

    def __init__(self, model, loss_fn, chunk=500):
        self.model = model
        self.loss_fn = loss_fn
        self.chunk = chunk
        layers = [x for x in model.layers if _is_activation(x)]
        self.layer_names = [x.name for x in layers]
        shapes = [tuple(x.output.shape) for x in layers]
        self._matrix = [len(shape) == 2 for shape in shapes]
        self._positions = [int(np.prod(shape[1:-1])) for shape in shapes]
        features = model.get_layer("classifier").input
        self._net = keras.Model(
            model.inputs, [*(x.output for x in layers), features, model.output]
        )
        self._step = tf.function(self._forward, reduce_retracing=True)

    def _forward(self, x, y):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            *acts, features, logits = self._net(x, training=False)
            loss = ops.sum(self.loss_fn(y, logits))
        # float32 statistics (and numpy-readable arrays) under a mixed policy
        acts = [compile_options.full_precision(a) for a in acts]
        features = compile_options.full_precision(features)
        grads = tape.gradient(loss, variables)
        grads = [
            tf.zeros_like(v) if g is None else g
            for g, v in zip(grads, variables)
        ]
        per_unit = [tf.reshape(tf.abs(a), [-1, a.shape[-1]]) for a in acts]
        maxes = [tf.reduce_max(a, 0) for a in per_unit]
        sums = [tf.reduce_sum(a, 0) for a in per_unit]
        # Only 2-D activations are returned whole (for their stable rank).
        acts = [a if m else tf.zeros([0]) for a, m in zip(acts, self._matrix)]
        return maxes, sums, acts, features, grads

    def measure(self, x, y, tau):
        """The diagnostics of the module docstring as a dict of floats."""
        n = len(x)
        maxes, sums, positions, grads = None, None, None, None
        matrices, features = [], []
        for start in range(0, n, self.chunk):
            m, s, acts, f, g = self._step(
                tf.constant(x[start : start + self.chunk]),
                tf.constant(y[start : start + self.chunk]),
            )
            m, s, g = ([np.asarray(t) for t in v] for v in (m, s, g))
            p = [len(f) * per_example for per_example in self._positions]
            if maxes is None:
                maxes, sums, positions, grads = m, s, p, g
            else:
                maxes = list(map(np.maximum, maxes, m))
                sums = list(map(np.add, sums, s))
                positions = list(map(np.add, positions, p))
                grads = list(map(np.add, grads, g))
            matrices.append([np.asarray(a) for a in acts])
            features.append(np.asarray(f).reshape(len(f), -1))
        results = {}
        if maxes:
            results["dead_fraction"] = dead_fraction(maxes)
            results["dormant_fraction"] = dormant_fraction(
                [s / p for s, p in zip(sums, positions)], tau
            )
        for i, name in enumerate(self.layer_names):
            if self._matrix[i]:
                layer = np.concatenate([chunk[i] for chunk in matrices])
                results[f"stable_rank/{name}"] = stable_rank(layer)
        results["feature_srank"] = stable_rank(np.concatenate(features))
        entries = sum(g.size for g in grads)
        results["gradient_magnitude"] = float(
            sum(np.abs(g).sum() for g in grads) / n / entries
        )
        results["zero_gradient_fraction"] = float(
            sum(np.count_nonzero(g == 0) for g in grads) / entries
        )
        return results


def transfer_metrics(matrix, init_accuracy=None):
    """Average accuracy, forgetting, BWT and FWT of a[i][j] (None = not
    measured); FWT needs `init_accuracy` b_j of the initial model."""
    a = np.array(
        [[np.nan if v is None else v for v in row] for row in matrix], float
    )
    tasks = len(a)
    last = tasks - 1
    results = {"average_accuracy": float(np.nanmean(a[last, :tasks]))}
    if tasks < 2:
        return results
    past = range(last)
    results["backward_transfer"] = float(
        np.mean([a[last, j] - a[j, j] for j in past])
    )
    results["forgetting"] = float(
        np.mean([np.nanmax(a[j:last, j]) - a[last, j] for j in past])
    )
    if init_accuracy is not None:
        results["forward_transfer"] = float(
            np.mean([a[j - 1, j] - init_accuracy[j] for j in range(1, tasks)])
        )
    return results

"""Zapping: resampling the weights into some output units (frati2024 §2).

"Re-initialized ... re-sampled from the initial weight distribution":
Kaiming-normal weights, biases set to zero (frati2024 §2.1.1, footnote 4).
The reference code differs (docs/reference_codes.md §1.1): it leaves the
bias and the optimizer state alone, and when it zaps k units at once its std
is √(2/(k·fan_in)), not √(2/fan_in). `zap` reproduces either.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from zapkeras import settings
from zapkeras import validate
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.methods import resets

STD_MODES = ("per_unit", "reference")
_STD_MODE = settings.OneOf(
    *STD_MODES,
    hint="use 'per_unit' (std √(2/fan_in), the paper) or 'reference' "
    "(√(2/(k·fan_in)) for k units zapped at once, the reference code).",
)
_FRACTION = settings.Fraction(
    low_open=True,
    note="It is the share of the output units zapped: 1.0 for all, 0.1 for "
    "10 %.",
)


@settings.declared("zap")
def zap(
    layer,
    units=None,
    *,
    optimizer=None,
    reset_bias: settings.Bool = True,
    std_mode: _STD_MODE = "per_unit",
    seed=None,
):
    """Resamples `layer.kernel[..., units]` from Kaiming-normal.

    Args:
      layer: a built layer with a `kernel` whose last axis is the unit axis
        (Dense, Conv*); fan_in is the product of the other kernel dims.
      units: None (every unit), an int, or a list/array/tensor of ints.
      optimizer: if given, its slot entries (e.g. Adam m and v) for exactly
        the zapped kernel columns (and bias entries, when reset) are zeroed.
        The reference code never resets optimizer state.
      reset_bias: set bias[units] = 0 (the paper); False leaves the bias
        untouched (the reference code).
      std_mode: 'per_unit' draws with std √(2/fan_in); 'reference' with
        √(2/(k·fan_in)) for k units zapped together (k = 1 for an int).
      seed: an int (the same int gives the same draw), a
        `keras.random.SeedGenerator` (advances each call) or None (Keras'
        global seed generator).

    Returns:
      The zapped unit indices: a sorted numpy int array (a tensor when
      `units` is symbolic or zap ran in replica context).

    Works eagerly and in a tf.function; on a model built under a strategy's
    scope it runs in cross-replica context (via `merge_call` from replica
    context), so every replica ends with the same values.
    """
    kernel = getattr(layer, "kernel", None)
    if not isinstance(kernel, keras.Variable):
        raise UsageError(
            f"zap: layer {getattr(layer, 'name', layer)!r} has no kernel "
            "variable; zap a built Dense or convolution layer (build the "
            "model first)."
        )
    if not isinstance(seed, keras.random.SeedGenerator):
        seed = validate.seed(
            seed, "zap.seed", none_means="Keras' global seed generator"
        )
    *fan_in_dims, num_units = (int(d) for d in kernel.shape)
    indices = resets.resolve_units(units, num_units, f"zap({layer.name}).units")
    if isinstance(indices, np.ndarray) and indices.size == 0:
        return indices
    fan_in = math.prod(fan_in_dims)

    def resample(indices):
        k = tf.size(indices)
        variance = 2.0 / fan_in
        if std_mode == "reference":
            variance /= tf.cast(k, tf.float32)
        # At least one column, so that a (symbolic) empty selection gathers
        # in range; nothing is written then.
        shape = tf.concat([fan_in_dims, [tf.maximum(k, 1)]], axis=0)
        fresh = keras.random.normal(shape, stddev=tf.sqrt(variance), seed=seed)
        mask = resets.unit_mask(indices, num_units)
        resets.assign_units(
            kernel, mask, resets.spread_units(fresh, indices, num_units)
        )
        reset = [kernel]
        bias = getattr(layer, "bias", None) if reset_bias else None
        if bias is not None:
            resets.assign_units(bias, mask, tf.zeros([], bias.dtype))
            reset.append(bias)
        if optimizer is not None:
            for variable in reset:
                resets.reset_slots(optimizer, variable, mask)
        return indices

    return resets.in_cross_replica_context(resample, indices)


@settings.declared
class Zapping(base.Method):
    """i.i.d. zapping at a cadence (frati2024 §2.1.1), on any trainer.

    With every=(n, 'epochs') (the default, n = 1): at the start of epoch
    e > 0 with e % n == 0 (after every n finished epochs, never after the
    last), as the reference's `lobo_rate`; with (n, 'steps') or
    (n, 'tasks'): after every n-th step or task. Zaps `units` if given,
    else round(fraction · n_out) (at least 1) output units of `layer`
    chosen uniformly without replacement. The choice and the draw depend
    on (seed, moment) only (moment: the epoch, step or task index), so
    reruns are identical and a resumed run zaps exactly as an
    uninterrupted one. Under ASB/MetaASB it zaps the wrapped classifier,
    on top of the wrapper's own per-episode zap. `self.history` lists
    (moment, number of units zapped); counters `resets` and `zapped`.

    Args:
      layer: the name of the layer of the model to zap.
      every: the cadence (n, unit); `every_n_epochs=n` is the deprecated
        spelling of (n, 'epochs').
      fraction: the share of output units zapped, in (0, 1].
      units: fixed unit indices to zap instead of a random share.
      std_mode, reset_bias: as for `zap`.
      reset_optimizer: also zero the optimizer's slots of the zapped
        entries (the reference code does not).
      seed: a non-negative int; None takes the run's seed.
    """

    name = "zapping"
    counter_names = ("resets", "zapped")
    epoch_hook = "begin"

    def __init__(
        self,
        layer="classifier",
        every=None,
        fraction: _FRACTION = 1.0,
        units=None,
        std_mode: _STD_MODE = "per_unit",
        reset_bias: settings.Bool = True,
        reset_optimizer: settings.Bool = False,
        seed=None,
        *,
        every_n_epochs=None,
    ):
        every = base.deprecated_every(
            "Zapping",
            every,
            "every_n_epochs",
            every_n_epochs,
            "epochs",
            (1, "epochs"),
        )
        super().__init__(every, seed)
        self.layer = layer
        self.fraction = fraction
        self.units = units
        self.std_mode = std_mode
        self.reset_bias = reset_bias
        self.reset_optimizer = reset_optimizer
        self.history = []

    def build(self, model):
        try:
            self._layer = model.get_layer(self.layer)
        except ValueError:
            raise UsageError(
                f"Zapping.layer = {self.layer!r} is not a layer of model "
                f"{model.name!r}; name one, e.g. 'classifier'."
            ) from None

    def act(self):
        layer = self._layer
        rng = np.random.default_rng([self.seed or 0, self.moment])
        units = self.units
        if units is None:
            num_units = layer.kernel.shape[-1]
            count = max(1, round(self.fraction * num_units))
            units = rng.choice(num_units, count, replace=False)
        zapped = zap(
            layer,
            units,
            optimizer=self.optimizer if self.reset_optimizer else None,
            reset_bias=self.reset_bias,
            std_mode=self.std_mode,
            seed=int(rng.integers(2**31)),
        )
        self.history.append((self.moment, len(zapped)))
        self.count("resets")
        self.count("zapped", len(zapped))

"""Continual Backprop (Dohare et al., Nature 2024; hernandez-garcia2025 §4).

After every optimizer step, for each hidden unit layer (`methods.units`),
as `GnT.gen_and_test` of the paper's code (loss-of-plasticity), which
gives the paper's MLP results:

1. age += 1; with η = `decay_rate` and this step's (global) batch of
   activations h: f ← η f + (1−η) mean(h), f̂ = f / (1 − η^age);
   u ← η u + (1−η) u_t with u_t = mean_k|W_out[j,k]| · mean|h_j|
   ("contribution") or mean_k|W_out[j,k]| · mean|h_j − f̂_j| /
   mean_i|W_in[i,j]| ("adaptable_contribution"); û = u / (1 − η^age)
   (Nature Eq. 7–8: ranking by the bias-corrected û).
2. eligible units: age > maturity_threshold; replace rr · n_eligible of
   them, accumulated in a per-layer float until whole units are due
   (accumulate=True) or Bernoulli-rounded when below 1 (False); nothing
   accumulates on a step without eligible units.
3. the lowest-û eligible units get fresh incoming weights (Kaiming-uniform
   U(±√2·√(3/fan_in)) for Dense, as GnT; incoming_init="layer" draws from
   the layer's initializer), incoming bias 0, outgoing weights 0,
   age = u = f = 0, and their entries of per-unit norms reset (BN γ 1
   β 0 mean 0 var 1; LN γ 1 β 0; reparameterised LN γ 0 β 0).

Conv layers (`conv_form`). The paper's convolutional results (Continual
ImageNet) come from the code's `ConvGnT`, which treats conv channels
differently; conv_form="reference" (the default) follows it:

- h is what the next layer reads: ConvGnT's features are the pooled
  outputs (after ReLU → max-pool, flattened before a linear layer), so
  here the output of the last layer before the next weighted layer (after
  pooling, Flatten, and any norm or dropout there); f and |h| are means
  over batch and positions, one f̂ per channel;
- towards a next Dense layer u_t is the mean over positions p of
  mean_k|W_out[p,c,k]| · mean_batch|h[p,c]| (|h − f̂_c| for
  adaptable_contribution), a mean of products; towards a next conv layer
  it is mean|W_out| (over out-channels and taps) · mean|h| (batch and
  positions);
- rr · (all channels) are due per step, accumulated (added only on steps
  with a mature channel), and at most the mature channels are replaced:
  ConvGnT subtracts the whole number due from its accumulator before
  choosing (its top-k would fail if more were due than are mature); the
  same happens here and the excess is dropped;
- new filters U(±√(1/fan_in)) (ConvGnT's conv bound, whatever the
  activation: PyTorch's default conv init) with incoming_init="kaiming",
  bias 0, outgoing weights 0;
- no bias correction: ConvGnT leaves the next layer's bias alone, so
  `bias_correction` does not apply to these layers.

ConvGnT always accumulates (accumulate=False Bernoulli-rounds rr · C here).
conv_form="units" treats a channel as GnT treats a Dense unit: h is the
activation layer's output (before pooling), u_t = mean|W_out| · mean|h|
(a product of means), rr · n_eligible due, new filters Kaiming-normal
N(0, 2/fan_in) (the code's ResNet version) and `bias_correction` as set.
Dense layers of a network with conv unit layers follow ConvGnT's linear
layers under "reference": rr · (all units) due, no bias correction; their
new weights keep the bound gain·√(3/fan_in) (ConvGnT's default init; the
Continual ImageNet run asks for U(±√(1/fan_in)) instead). Dense layers of
an MLP are GnT's under both forms.

Bias correction: the next layer's bias += Σ_j W_out[j, :] · f̂_j over the
replaced units (each outgoing row; summed over spatial positions for
conv), so the next layer's output keeps the replaced units' mean
contribution (exactly when activation → [pooling, Flatten] → next layer;
approximately through a norm or at 'same'-padding borders). GnT zeroes f
before reading it, so its correction adds 0; `bias_correction=
"reference"` reproduces that (no change), False skips it. The paper's
code resets optimizer moments only with its custom AdamGnT (its Continual
ImageNet runs use SGD with momentum and reset nothing);
`reset_optimizer=True` zeroes the optimizer slots of the incoming columns,
their biases and the outgoing weights (Keras' step count is global and
stays). Replacement follows the optimizer step, as in GnT and ConvGnT
(the SWR repo's CBP layers replace during the backward pass instead),
and runs in the callback, in cross-replica context.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from zapkeras import settings
from zapkeras.methods import base
from zapkeras.methods import hooks
from zapkeras.methods import inits
from zapkeras.methods import units as units_lib

UTILITIES = ("contribution", "adaptable_contribution")
BIAS_CORRECTIONS = (True, False, "reference")
INCOMING_INITS = ("kaiming", "layer")
CONV_FORMS = ("reference", "units")
_REPLACEMENT_RATE = settings.Fraction(example="1e-4")
_MATURITY_THRESHOLD = settings.NonNegativeInt(
    example=100, note="It is a number of steps."
)
_DECAY_RATE = settings.Fraction(high_open=True, example="0.99 (the paper's)")
_BIAS_CORRECTION = settings.OneOf(
    *BIAS_CORRECTIONS, hint="use True, False or 'reference'."
)
_INCOMING_INIT = settings.OneOf(
    *INCOMING_INITS, hint="use 'kaiming' (the paper's code) or 'layer'."
)
_CONV_FORM = settings.OneOf(
    *CONV_FORMS,
    hint="use 'reference' (ConvGnT, the paper's conv code) or 'units' "
    "(each channel treated as a Dense unit).",
)


def _is_conv(unit):
    return len(unit.layer.kernel.shape) > 2


def _outgoing_magnitude(unit):
    """mean_k |W_out| per (position, unit): [positions, num_units]."""
    view = units_lib.outgoing_view(unit.next.kernel, unit.num_units)
    return tf.reduce_mean(tf.abs(view), axis=2)


@settings.declared
class ContinualBackprop(base.Method):
    """CBP as a method for any trainer (plain `fit`, ASB, MetaASB).

    Under ASB/MetaASB the activations are those of the outer step's meta
    batch and replacement follows the outer step.

    Args:
      replacement_rate: rr, the fraction of units replaced per step
        (of the eligible ones; of all units of a conv network under
        conv_form="reference"); the paper's code uses 1e-4 … 1e-6 on
        MNIST, 3e-4 on Continual ImageNet.
      maturity_threshold: minimum age before a unit may be replaced.
      decay_rate: η of the running averages (the paper's 0.99).
      utility: "contribution" or "adaptable_contribution" (the paper's
        permuted-MNIST and Continual ImageNet setting).
      accumulate: fractional replacements accumulate (True, the MNIST
        configs and ConvGnT) or are Bernoulli-rounded (False).
      bias_correction: True (working), "reference" (adds 0, as GnT) or
        False; not applied in a conv network under conv_form="reference".
      reset_optimizer: zero optimizer slots of the reset entries.
      incoming_init: "kaiming" (the paper's code: Kaiming-uniform for
        Dense; for conv U(±√(1/fan_in)) under conv_form="reference",
        Kaiming-normal under "units") or "layer" (its initializer).
      conv_form: "reference" (ConvGnT, which gives the paper's conv
        results) or "units" (a channel treated as a Dense unit); see the
        module docstring. It does not change an MLP.
      seed: fixes every draw; None means 0.
      layers: names of the hidden layers to act on; None finds them all
        (see `zapkeras.methods.units`).

    Counter: `replaced` (units, over the run). `last_replaced` maps layer
    names to the unit indices replaced after the last step.
    """

    name = "cbp"
    counter_names = ("replaced",)

    def __init__(
        self,
        replacement_rate: _REPLACEMENT_RATE,
        maturity_threshold: _MATURITY_THRESHOLD,
        decay_rate: _DECAY_RATE = 0.99,
        utility: settings.OneOf(*UTILITIES) = "contribution",
        accumulate: settings.Bool = True,
        bias_correction: _BIAS_CORRECTION = True,
        reset_optimizer: settings.Bool = False,
        incoming_init: _INCOMING_INIT = "kaiming",
        conv_form: _CONV_FORM = "reference",
        seed=None,
        layers=None,
    ):
        super().__init__(None, seed)
        self.replacement_rate = replacement_rate
        self.maturity_threshold = maturity_threshold
        self.decay_rate = decay_rate
        self.utility = utility
        self.accumulate = accumulate
        self.bias_correction = bias_correction
        self.reset_optimizer = reset_optimizer
        self.incoming_init = incoming_init
        self.conv_form = conv_form
        self.layers = layers
        self.last_replaced = {}

    def _reference(self, unit):
        """Whether `unit` follows ConvGnT (a conv layer, conv_form ref.)."""
        return self.conv_form == "reference" and _is_conv(unit)

    def _read(self, unit):
        """The layer whose output is `unit`'s activation h."""
        return unit.read if self._reference(unit) else unit.output

    def build(self, model):
        self.units = units_lib.unit_layers(
            model, self.layers, "ContinualBackprop.layers"
        )
        self.observed = [self._read(unit) for unit in self.units]
        # ConvGnT's counting and no bias correction, for every layer of a
        # conv network.
        self.conv_gnt = self.conv_form == "reference" and any(
            _is_conv(unit) for unit in self.units
        )
        self.state = {}
        for unit in self.units:
            zeros = np.zeros(unit.num_units, np.float32)
            self.state[unit.name] = {
                key: self.add_state(f"{unit.name}/{key}", zeros)
                for key in ("age", "mean_activation", "utility")
            }
            self.state[unit.name]["accumulated"] = self.add_state(
                f"{unit.name}/accumulated", 0.0, dtype="float64"
            )

    def _per_position(self, unit):
        """Whether u_t is a mean over positions of products (ConvGnT's
        conv → linear form)."""
        return self._reference(unit) and isinstance(
            unit.next, keras.layers.Dense
        )

    def observe(self, step):
        eta = self.decay_rate
        activations = []
        for unit in self.units:
            h = step.activations[self._read(unit).name]
            if self._reference(unit):  # [batch, positions, channels]
                h = tf.reshape(h, [tf.shape(h)[0], -1, unit.num_units])
            activations.append(h)
        means = hooks.global_unit_means(activations)
        targets, values, corrected = [], [], []
        for unit, h, mean in zip(self.units, activations, means):
            state = self.state[unit.name]
            age = state["age"] + 1.0
            f = eta * state["mean_activation"] + (1.0 - eta) * mean
            corrected.append(f / (1.0 - eta**age))
            targets += [state["age"], state["mean_activation"]]
            values += [age, f]
        deviations = []
        for unit, h, f_hat in zip(self.units, activations, corrected):
            if self.utility == "adaptable_contribution":
                h = h - f_hat
            h = tf.abs(h)
            if self._per_position(unit):  # mean over the batch only
                h = tf.reshape(h, [tf.shape(h)[0], -1])
            deviations.append(h)
        magnitudes = hooks.global_unit_means(deviations)
        for unit, magnitude in zip(self.units, magnitudes):
            outgoing = _outgoing_magnitude(unit)
            if self._per_position(unit):
                magnitude = tf.reshape(magnitude, [-1, unit.num_units])
                now = tf.reduce_mean(outgoing * magnitude, axis=0)
            else:
                now = tf.reduce_mean(outgoing, axis=0) * magnitude
            if self.utility == "adaptable_contribution":
                axes = units_lib.unit_axes(unit.layer.kernel)
                now /= tf.reduce_mean(tf.abs(unit.layer.kernel), axis=axes)
            utility = self.state[unit.name]["utility"]
            targets.append(utility)
            values.append(eta * utility + (1.0 - eta) * now)
        hooks.assign_all(targets, values)

    def after_step(self, step):
        rng = np.random.default_rng([self.seed or 0, step])
        self.last_replaced = {}
        for unit in self.units:
            chosen = self._choose(unit, rng)
            if chosen.size:
                self._replace(unit, chosen)
                self.last_replaced[unit.name] = chosen
                self.count("replaced", chosen.size)

    def _choose(self, unit, rng):
        """Indices of the units of `unit` to replace after this step."""
        state = self.state[unit.name]
        age = state["age"].numpy()
        eligible = np.flatnonzero(age > self.maturity_threshold)
        if not eligible.size or not self.replacement_rate:
            return eligible[:0]
        base = unit.num_units if self.conv_gnt else eligible.size
        due = self.replacement_rate * base
        if self.accumulate:
            due += float(state["accumulated"].numpy())
            count = int(due)
            state["accumulated"].assign(due - count)
        else:
            count = int(due) if due >= 1 else int(rng.random() <= due)
        count = min(count, eligible.size)
        if not count:
            return eligible[:0]
        corrected = state["utility"].numpy()[eligible] / (
            1.0 - self.decay_rate ** age[eligible]
        )
        order = np.argsort(corrected, kind="stable")
        return np.sort(eligible[order[:count]])

    def _replace(self, unit, chosen):
        state = self.state[unit.name]
        mask = np.zeros(unit.num_units, bool)
        mask[chosen] = True
        mask = tf.constant(mask)
        shift = None
        if self.bias_correction is True and not self.conv_gnt:
            age = state["age"].numpy()[chosen]
            f_hat = np.zeros(unit.num_units, np.float32)
            f_hat[chosen] = state["mean_activation"].numpy()[chosen] / (
                1.0 - self.decay_rate**age
            )
            view = units_lib.outgoing_view(unit.next.kernel, unit.num_units)
            shift = tf.einsum("pjk,j->k", view, f_hat)
        units_lib.reset(
            unit,
            mask,
            self._incoming(unit),
            optimizer=self.optimizer if self.reset_optimizer else None,
            norms=True,
            shift=shift,
        )
        for key in ("age", "mean_activation", "utility"):
            variable = state[key]
            variable.assign(tf.where(mask, 0.0, variable))

    def _incoming(self, unit):
        kernel = unit.layer.kernel
        fan_in = math.prod(kernel.shape[:-1])
        if self.incoming_init == "layer":
            distribution = inits.of_variable(self.target, kernel)
        elif not _is_conv(unit):  # Dense: Kaiming-uniform, gain √2
            bound = math.sqrt(2.0) * math.sqrt(3.0 / fan_in)
            distribution = inits.Distribution("uniform", 0.0, bound)
        elif self._reference(unit):  # ConvGnT: U(±√(1/fan_in))
            bound = math.sqrt(1.0 / fan_in)
            distribution = inits.Distribution("uniform", 0.0, bound)
        else:  # conv, "units": Kaiming-normal
            distribution = inits.Distribution(
                "normal", 0.0, math.sqrt(2.0 / fan_in)
            )
        return inits.sample(
            distribution, kernel.shape, kernel.dtype, self.seed_generator
        )

"""Continual Backprop (Dohare et al., Nature 2024; hernandez-garcia2025 §2).

After every optimizer step, for each hidden unit layer (`methods.units`),
as the reference `GnT.gen_and_test` (reference-implementations.md §4.1):

1. age += 1; with η = `decay_rate` and this step's (global) batch of
   activations h: f ← η f + (1−η) mean(h), f̂ = f / (1 − η^age);
   u ← η u + (1−η) u_t with u_t = mean_k|W_out[j,k]| · mean|h_j|
   ("contribution") or mean_k|W_out[j,k]| · mean|h_j − f̂_j| /
   mean_i|W_in[i,j]| ("adaptable_contribution"); û = u / (1 − η^age)
   (Nature Eq. 7–8: ranking by the bias-corrected û).
2. eligible units: age > maturity_threshold; replace rr · n_eligible of
   them, accumulated in a per-layer float until whole units are due
   (accumulate=True) or Bernoulli-rounded when below 1 (False).
3. the lowest-û eligible units get fresh incoming weights (Kaiming-uniform
   U(±√2·√(3/fan_in)) for Dense, Kaiming-normal N(0, 2/fan_in) for conv,
   as the reference MLP and ResNet code; incoming_init="layer" draws from
   the layer's initializer), incoming bias 0, outgoing weights 0,
   age = u = f = 0, and their entries of per-unit norms reset (BN γ 1
   β 0 mean 0 var 1; LN γ 1 β 0; reparameterised LN γ 0 β 0).

Bias correction: the next layer's bias += Σ_j W_out[j, :] · f̂_j over the
replaced units (each outgoing row; summed over spatial positions for
conv), so the next layer's output keeps the replaced units' mean
contribution (exactly when activation → [pooling, Flatten] → next layer;
approximately through a norm or at 'same'-padding borders). The
reference zeroes f before reading it, so its correction adds 0;
`bias_correction="reference"` reproduces that (no change), False skips it.
The reference resets Adam moments only with its custom AdamGnT;
`reset_optimizer=True` zeroes the optimizer slots of the incoming columns,
their biases and the outgoing weights (Keras' step count is global and
stays). Replacement follows the optimizer step, as in the reference GnT
(§4.1; the SWR repo's CBP layers replace during the backward pass, §2.2),
and runs in the callback, in cross-replica context.
"""

import math

import numpy as np
import tensorflow as tf

from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.methods import hooks
from zapkeras.methods import inits
from zapkeras.methods import units as units_lib

UTILITIES = ("contribution", "adaptable_contribution")
BIAS_CORRECTIONS = (True, False, "reference")
INCOMING_INITS = ("kaiming", "layer")


def _outgoing_magnitude(unit):
    """mean over outgoing weights of |W_out| per unit: [num_units]."""
    view = units_lib.outgoing_view(unit.next.kernel, unit.num_units)
    return tf.reduce_mean(tf.abs(view), axis=[0, 2])


class ContinualBackprop(base.Method):
    """CBP as a method for any trainer (plain `fit`, ASB, MetaASB).

    Under ASB/MetaASB the activations are those of the outer step's meta
    batch and replacement follows the outer step.

    Args:
      replacement_rate: rr, the fraction of eligible units replaced per
        step (reference 1e-4 … 1e-6 MNIST, 3e-4 Continual ImageNet).
      maturity_threshold: minimum age before a unit may be replaced.
      decay_rate: η of the running averages (reference 0.99).
      utility: "contribution" or "adaptable_contribution" (the reference's
        permuted-MNIST setting).
      accumulate: fractional replacements accumulate (True, the MNIST
        configs) or are Bernoulli-rounded (False).
      bias_correction: True (working), "reference" (adds 0, as the
        reference code) or False.
      reset_optimizer: zero optimizer slots of the reset entries.
      incoming_init: "kaiming" (reference) or "layer" (its initializer).
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
        replacement_rate,
        maturity_threshold,
        decay_rate=0.99,
        utility="contribution",
        accumulate=True,
        bias_correction=True,
        reset_optimizer=False,
        incoming_init="kaiming",
        seed=None,
        layers=None,
    ):
        super().__init__(None, seed)
        valid = {
            "replacement_rate": 0.0 <= replacement_rate <= 1.0,
            "maturity_threshold": maturity_threshold >= 0,
            "decay_rate": 0.0 <= decay_rate < 1.0,
            "utility": utility in UTILITIES,
            "bias_correction": bias_correction in BIAS_CORRECTIONS,
            "incoming_init": incoming_init in INCOMING_INITS,
        }
        given = {
            "replacement_rate": replacement_rate,
            "maturity_threshold": maturity_threshold,
            "decay_rate": decay_rate,
            "utility": utility,
            "bias_correction": bias_correction,
            "incoming_init": incoming_init,
        }
        for setting, ok in valid.items():
            if not ok:
                raise UsageError(
                    f"ContinualBackprop.{setting} = {given[setting]!r}; "
                    + _HINTS[setting]
                )
        self.replacement_rate = float(replacement_rate)
        self.maturity_threshold = maturity_threshold
        self.decay_rate = float(decay_rate)
        self.utility = utility
        self.accumulate = accumulate
        if bias_correction != "reference":
            bias_correction = bool(bias_correction)
        self.bias_correction = bias_correction
        self.reset_optimizer = reset_optimizer
        self.incoming_init = incoming_init
        self.layers = layers
        self.last_replaced = {}

    def build(self, model):
        self.units = units_lib.unit_layers(
            model, self.layers, "ContinualBackprop.layers"
        )
        self.observed = [unit.output for unit in self.units]
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

    def observe(self, step):
        eta = self.decay_rate
        activations = [step.activations[u.output.name] for u in self.units]
        means = hooks.global_unit_means(activations)
        targets, values, corrected = [], [], []
        for unit, h, mean in zip(self.units, activations, means):
            state = self.state[unit.name]
            age = state["age"] + 1.0
            f = eta * state["mean_activation"] + (1.0 - eta) * mean
            corrected.append(f / (1.0 - eta**age))
            targets += [state["age"], state["mean_activation"]]
            values += [age, f]
        if self.utility == "adaptable_contribution":
            magnitudes = hooks.global_unit_means(
                [tf.abs(h - f_hat) for h, f_hat in zip(activations, corrected)]
            )
        else:
            magnitudes = hooks.global_unit_means(
                [tf.abs(h) for h in activations]
            )
        for unit, magnitude in zip(self.units, magnitudes):
            now = _outgoing_magnitude(unit) * magnitude
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
        due = self.replacement_rate * eligible.size
        if self.accumulate:
            due += float(state["accumulated"].numpy())
            count = int(due)
            state["accumulated"].assign(due - count)
        else:
            count = int(due) if due >= 1 else int(rng.random() <= due)
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
        if self.bias_correction is True:
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
        if self.incoming_init == "layer":
            distribution = inits.of_variable(self.target, kernel)
        else:
            fan_in = math.prod(kernel.shape[:-1])
            if len(kernel.shape) == 2:  # Dense: Kaiming-uniform
                bound = math.sqrt(2.0) * math.sqrt(3.0 / fan_in)
                distribution = inits.Distribution("uniform", 0.0, bound)
            else:  # conv: Kaiming-normal
                distribution = inits.Distribution(
                    "normal", 0.0, math.sqrt(2.0 / fan_in)
                )
        return inits.sample(
            distribution, kernel.shape, kernel.dtype, self.seed_generator
        )


_HINTS = {
    "replacement_rate": "use a fraction in [0, 1] (e.g. 1e-4).",
    "maturity_threshold": "use a number of steps ≥ 0 (e.g. 100).",
    "decay_rate": "use a value in [0, 1) (reference 0.99).",
    "utility": "use 'contribution' or 'adaptable_contribution'.",
    "bias_correction": "use True, False or 'reference'.",
    "incoming_init": "use 'kaiming' (reference) or 'layer'.",
}

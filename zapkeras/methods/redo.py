"""ReDo: recycling dormant neurons (Sokar et al., ICML 2023).

Every `frequency` steps, after the optimizer step, each hidden unit layer
(`methods.units`; never the output layer) scores its units by
s_j = mean|h_j| / (mean_k mean|h_k| + 1e-9), the mean over the batch (and
spatial positions, per channel, for conv). Units with s_j ≤ τ are dormant
(τ = 0: exactly zero activity) and are recycled as dopamine's
`NeuronRecycler` does (reference-implementations.md §5.1): incoming
weights resampled from the layer's initializer, bias 0, outgoing weights
0 (the mask repeated over spatial positions after conv → Flatten → Dense),
and the optimizer slots (Adam m and v) of those entries zeroed
(`reset_optimizer`, default True; Keras' step count is global and stays,
as in dopamine; the bias slots are zeroed too, which dopamine leaves).

Scores come from this step's global training batch (statistics="batch",
the activations Keras computed with training=True) or, as dopamine with
its 256 replay states, from a fixed batch of inputs given as
`statistics` (run with training=False at each recycling step).
"""

import keras
import numpy as np
import tensorflow as tf

from zapkeras.errors import UsageError
from zapkeras.methods import hooks
from zapkeras.methods import inits
from zapkeras.methods import units as units_lib


def dormant(scores, threshold):
    """Boolean mask of the τ-dormant units given their mean |activation|."""
    scores = np.asarray(scores, np.float64)
    return scores / (scores.mean() + 1e-9) <= threshold


class ReDo(hooks.StepCallback):
    """ReDo as a Keras callback for any `model.fit` (SPEC §5).

    Args:
      frequency: recycle after every `frequency`-th step (paper 1000).
      threshold: τ ≥ 0 (paper 0.025; 0.1 at high replay ratios).
      reset_optimizer: zero the optimizer slots of recycled entries.
      statistics: "batch" (this step's training batch) or a fixed batch
        of model inputs to score on.
      layers: names of the hidden layers to act on; None finds them all.
      seed: fixes the draws; None means 0.

    After a recycling step, `last_dormant_fraction` holds the share of
    all scored units that were dormant at τ ("threshold") and exactly
    inactive ("zero"), and `last_dormant` the recycled unit indices per
    layer.
    """

    def __init__(
        self,
        frequency,
        threshold,
        reset_optimizer=True,
        statistics="batch",
        layers=None,
        seed=None,
    ):
        super().__init__(seed)
        if not (isinstance(frequency, (int, np.integer)) and frequency >= 1):
            raise UsageError(
                f"ReDo.frequency = {frequency!r}; use an integer ≥ 1 "
                "(training steps between recycling, paper 1000)."
            )
        if not threshold >= 0:
            raise UsageError(
                f"ReDo.threshold = {threshold!r}; use τ ≥ 0 (paper 0.025, "
                "0 recycles only units that are exactly inactive)."
            )
        if isinstance(statistics, str) and statistics != "batch":
            raise UsageError(
                f"ReDo.statistics = {statistics!r}; use 'batch' or a fixed "
                "batch of model inputs (e.g. 256 examples)."
            )
        self.frequency = int(frequency)
        self.threshold = float(threshold)
        self.reset_optimizer = reset_optimizer
        self.statistics = statistics
        self.layers = layers
        self.last_dormant_fraction = {}
        self.last_dormant = {}

    def build(self, model):
        self.units = units_lib.unit_layers(model, self.layers, "ReDo.layers")
        self.distributions = [
            inits.of_variable(model, unit.layer.kernel, "ReDo")
            for unit in self.units
        ]
        if isinstance(self.statistics, str):
            self.observed = [unit.output for unit in self.units]
            self.scores = [
                self.add_state(
                    f"{unit.name}/score", np.zeros(unit.num_units, np.float32)
                )
                for unit in self.units
            ]
        else:
            functional = getattr(model, "_functional", None) or model
            self.features = keras.Model(
                functional.input, [unit.output.output for unit in self.units]
            )

    def observe(self, step):
        activations = [step.activations[u.output.name] for u in self.units]
        means = hooks.global_unit_means([tf.abs(h) for h in activations])
        hooks.assign_all(self.scores, means)

    def _scores(self):
        if isinstance(self.statistics, str):
            return [score.numpy() for score in self.scores]
        outputs = self.features(self.statistics, training=False)
        return [
            tf.reduce_mean(tf.abs(h), axis=units_lib.unit_axes(h)).numpy()
            for h in outputs
        ]

    def after_step(self, step):
        if step % self.frequency:
            return
        scores = self._scores()
        counts = {"threshold": 0, "zero": 0}
        self.last_dormant = {}
        for unit, score, distribution in zip(
            self.units, scores, self.distributions
        ):
            mask = dormant(score, self.threshold)
            counts["threshold"] += int(mask.sum())
            counts["zero"] += int(dormant(score, 0.0).sum())
            self.last_dormant[unit.name] = np.flatnonzero(mask)
            if not mask.any():
                continue
            kernel = unit.layer.kernel
            units_lib.reset(
                unit,
                tf.constant(mask),
                inits.sample(
                    distribution,
                    kernel.shape,
                    kernel.dtype,
                    self.seed_generator,
                ),
                optimizer=(
                    self.model.optimizer if self.reset_optimizer else None
                ),
            )
        total = sum(unit.num_units for unit in self.units)
        self.last_dormant_fraction = {k: n / total for k, n in counts.items()}

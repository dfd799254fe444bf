"""ReDo: recycling dormant neurons (Sokar et al., ICML 2023).

Every n steps (`every=(n, "steps")`), after the optimizer step, each hidden
unit layer (`methods.units`; never the output layer) scores its units by
s_j = mean|h_j| / (mean_k mean|h_k| + 1e-9), the mean over the batch (and
spatial positions, per channel, for conv). Units with s_j ≤ τ are dormant
(τ = 0: exactly zero activity) and are recycled as dopamine's
`NeuronRecycler` does (docs/reference_codes.md §5.1): incoming
weights resampled from the layer's initializer, bias 0, outgoing weights
0 (the mask repeated over spatial positions after conv → Flatten → Dense),
and the optimizer slots (Adam m and v) of those entries zeroed
(`reset_optimizer`, default True; Keras' step count is global and stays,
as in dopamine; the bias slots are zeroed too, which dopamine leaves).
The entries of the recycled units in per-unit norms on their path are put
back to their initial values (LayerNorm γ 1, β 0; reparameterised γ 0;
BatchNorm statistics 0, 1), as the SWR paper's ReDo (`ReDoLinear`,
docs/reference_codes.md §2.2): otherwise a unit dead through its LayerNorm
stays dead. `reset_norms=False` leaves them, as dopamine (whose nets have none).
Under ASB/MetaASB the scores come from the outer step's meta batch.

Scores come from this step's global training batch (statistics="batch",
the activations Keras computed with training=True) or, as dopamine with
its 256 replay states, from a fixed batch of inputs given as
`statistics` (run with training=False at each recycling step).
"""

import keras
import numpy as np
import tensorflow as tf

from zapkeras import compat
from zapkeras import compile_options
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.methods import hooks
from zapkeras.methods import inits
from zapkeras.methods import units as units_lib

_THRESHOLD = settings.Maybe(
    settings.NonNegativeNumber(
        example=0.025,
        note="It is τ (paper 0.025; 0 recycles only units that are exactly "
        "inactive).",
    )
)


def dormant(scores, threshold):
    """Boolean mask of the τ-dormant units given their mean |activation|."""
    scores = np.asarray(scores, np.float64)
    return scores / (scores.mean() + 1e-9) <= threshold


@settings.declared
class ReDo(base.Method):
    """ReDo as a method for any trainer (plain `fit`, ASB, MetaASB).

    Args:
      every: (n, 'steps'): recycle after every n-th step (paper 1000);
        `frequency=n` is the deprecated spelling.
      threshold: τ ≥ 0 (paper 0.025; 0.1 at high replay ratios).
      reset_optimizer: zero the optimizer slots of recycled entries.
      reset_norms: reset the recycled units' norm entries (default True,
        the SWR paper's code; False: dopamine).
      statistics: "batch" (this step's training batch) or a fixed batch
        of model inputs to score on.
      layers: names of the hidden layers to act on; None finds them all.
      seed: fixes the draws; None means 0.

    Counters: `resets` (recycling steps), `recycled` (units, over the run),
    `dormant_fraction` and `zero_fraction` (share of scored units dormant
    at τ and exactly inactive at the last recycling step). `last_dormant`
    holds the recycled unit indices per layer of the last one.
    """

    name = "redo"
    counter_names = ("resets", "recycled", "dormant_fraction", "zero_fraction")

    def __init__(
        self,
        every=None,
        threshold: _THRESHOLD = None,
        reset_optimizer: settings.Bool = True,
        statistics="batch",
        layers=None,
        seed=None,
        *,
        reset_norms: settings.Bool = True,
        frequency=None,
    ):
        every = base.deprecated_every(
            "ReDo", every, "frequency", frequency, "steps", None
        )
        if every is None or threshold is None:
            raise UsageError(
                "ReDo needs every=(n, 'steps') and threshold (paper: "
                "every=(1000, 'steps'), threshold=0.025)."
            )
        super().__init__(every, seed, units=("steps",))
        if isinstance(statistics, str) and statistics != "batch":
            raise UsageError(
                f"ReDo.statistics = {statistics!r}; use 'batch' or a fixed "
                "batch of model inputs (e.g. 256 examples)."
            )
        self.threshold = threshold
        self.reset_optimizer = reset_optimizer
        self.reset_norms = reset_norms
        self.statistics = statistics
        self.layers = layers
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
            self.features = keras.Model(
                compat.functional(model).input,
                [unit.output.output for unit in self.units],
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
            tf.reduce_mean(
                tf.abs(compile_options.full_precision(h)),
                axis=units_lib.unit_axes(h),
            ).numpy()
            for h in outputs
        ]

    def act(self):
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
                optimizer=self.optimizer if self.reset_optimizer else None,
                norms=self.reset_norms,
            )
        total = sum(unit.num_units for unit in self.units)
        self.count("resets")
        self.count("recycled", counts["threshold"])
        self.set_counter("dormant_fraction", counts["threshold"] / total)
        self.set_counter("zero_fraction", counts["zero"] / total)

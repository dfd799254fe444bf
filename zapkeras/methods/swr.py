"""Selective Weight Reinitialization (hernandez-garcia2025 §3, Alg. 2;
the pruning functions are its Alg. 1).

Every n steps (`every=(n, "steps")`), right after the optimizer step, each
trainable tensor on its own: score every weight by a utility, pick the
low-utility ones and reinitialise them (docs/reference_codes.md §2.1, §2.7):

- utility "gradient": |∂L/∂w · w| with this step's (global mean) gradient
  and the already-updated weight; "magnitude": |w|;
- pruning "threshold": every weight with u ≤ factor · mean(u) (mean over
  the tensor); "proportional": the floor(Nρ) + Bernoulli(frac(Nρ)) lowest
  utilities (ρ = `factor`; ties broken by position);
- reinit "resample": fresh draws from the tensor's own initial
  distribution (`zapkeras.methods.inits`); "mean": that distribution's
  mean (0 for weights and biases, 1 for a LayerNorm γ, 0 for a
  reparameterised one).

With decay > 0 the utility is a running average u ← decay·u + (1−decay)·u_t
updated every step and zeroed in any tensor that had a reinitialisation.
A weight whose true gradient is 0 (e.g. a conv bias right before a
per-example norm) has a rounding-noise utility, so which of those SWR
picks is arbitrary (as in the reference) and may change with the number
of replicas. The reference never touches optimizer state (its config key
for that is read by no code), so `reset_optimizer` defaults to False; True
zeroes the slots (e.g. Adam m and v) of exactly the reinitialised entries.
"""

import numpy as np
import tensorflow as tf

from zapkeras import settings
from zapkeras import validate
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.methods import hooks
from zapkeras.methods import inits
from zapkeras.methods import resets

UTILITIES = ("gradient", "magnitude")
PRUNINGS = ("threshold", "proportional")
REINITS = ("resample", "mean")
_DECAY = settings.Fraction(
    high_open=True, note="0 uses this step's utility, as the reference."
)


def select(utility, pruning, factor, rng):
    """Boolean mask (shape of `utility`) of the weights to reinitialise."""
    flat = np.asarray(utility, np.float64).reshape(-1)
    if pruning == "threshold":
        mask = flat <= factor * flat.mean()
    else:
        expected = flat.size * factor
        count = int(expected) + int(rng.binomial(1, expected % 1))
        mask = np.zeros(flat.size, bool)
        mask[np.argsort(flat, kind="stable")[:count]] = True
    return mask.reshape(np.shape(utility))


@settings.declared
class SelectiveWeightReinit(base.Method):
    """SWR as a method for any trainer (plain `fit`, ASB, MetaASB).

    Under ASB/MetaASB the gradient utility is that of the outer step (the
    update actually applied), taken with the classifier's weights after it.

    Args:
      every: (n, 'steps'): reinitialise after every n-th step (reference
        2048 on permuted MNIST, 128 for the ViT); `frequency=n` is the
        deprecated spelling.
      factor: threshold factor (reference 1e-5 MNIST, 5e-4 ViT) or, for
        pruning="proportional", the fraction ρ in [0, 1].
      utility, pruning, reinit: as in the module docstring.
      decay: running-utility decay in [0, 1); 0 (the reference's setting
        in all experiments) uses the step's utility.
      reset_optimizer: zero optimizer slots of reinitialised entries.
      init_distributions: {variable path: (kind, mean, scale)} overriding
        what the layers' initializers say (see `inits.KINDS`).
      seed: fixes the draws and the Bernoulli rounding; None means 0.

    Counters: `resets` (reinitialisation steps) and `reinitialized`
    (weights, over the run); after a reinitialisation step,
    `last_reinitialized` maps each tensor's path to its count.
    """

    name = "swr"
    counter_names = ("resets", "reinitialized")

    def __init__(
        self,
        every=None,
        factor=None,
        utility: settings.OneOf(*UTILITIES) = "gradient",
        pruning: settings.OneOf(*PRUNINGS) = "threshold",
        reinit: settings.OneOf(*REINITS) = "resample",
        decay: _DECAY = 0.0,
        reset_optimizer: settings.Bool = False,
        init_distributions=None,
        seed=None,
        frequency=None,
    ):
        every = base.deprecated_every(
            "SelectiveWeightReinit",
            every,
            "frequency",
            frequency,
            "steps",
            None,
        )
        if every is None or factor is None:
            raise UsageError(
                "SelectiveWeightReinit needs every=(n, 'steps') and factor "
                "(reference: every=(2048, 'steps'), factor=1e-5)."
            )
        super().__init__(every, seed, units=("steps",))
        if pruning == "proportional":
            factor = validate.fraction(
                factor,
                "SelectiveWeightReinit.factor",
                example=0.01,
                note="For pruning='proportional' it is the fraction ρ of "
                "each tensor's weights reinitialised.",
            )
        else:
            factor = validate.non_negative_number(
                factor,
                "SelectiveWeightReinit.factor",
                example="1e-5",
                note="Weights with utility ≤ factor · mean utility are "
                "reinitialised.",
            )
        self.factor = factor
        self.utility = utility
        self.pruning = pruning
        self.reinit = reinit
        self.decay = decay
        self.reset_optimizer = reset_optimizer
        self.init_distributions = init_distributions
        self.last_reinitialized = {}

    def build(self, model):
        self.variables = list(model.trainable_variables)
        self.distributions = inits.distributions(
            model,
            self.variables,
            self.init_distributions,
            "SelectiveWeightReinit.init_distributions",
        )
        self.gradients_needed = self.utility == "gradient"
        self.utilities = None
        if self.gradients_needed or self.decay > 0:
            self.utilities = [
                self.add_state(f"utility/{v.path}", tf.zeros(v.shape))
                for v in self.variables
            ]
        self.without_gradient = set()

    def needs_hook(self):
        return self.utilities is not None

    def observe(self, step):
        gradients = step.gradients or [None] * len(self.variables)
        targets, values = [], []
        for variable, gradient, utility in zip(
            self.variables, gradients, self.utilities
        ):
            weight = tf.convert_to_tensor(variable)
            if self.utility == "magnitude":
                now = tf.abs(weight)
            elif gradient is None:
                self.without_gradient.add(variable.path)  # at trace time
                continue
            else:
                now = tf.abs(tf.cast(gradient, weight.dtype) * weight)
            if self.decay > 0:
                now = self.decay * utility + (1.0 - self.decay) * now
            targets.append(utility)
            values.append(now)
        hooks.assign_all(targets, values)

    def act(self):
        step = self.moment
        rng = np.random.default_rng([self.seed or 0, step])
        self.last_reinitialized = {}
        for i, variable in enumerate(self.variables):
            if variable.path in self.without_gradient:
                continue
            if self.utilities is None:
                utility = np.abs(variable.numpy())
            else:
                utility = self.utilities[i].numpy()
            mask = select(utility, self.pruning, self.factor, rng)
            count = int(mask.sum())
            self.last_reinitialized[variable.path] = count
            if count:
                self._reinitialize(variable, tf.constant(mask))
                if self.utilities is not None and self.decay > 0:
                    self.utilities[i].assign(tf.zeros(variable.shape))
        self.count("resets")
        self.count("reinitialized", sum(self.last_reinitialized.values()))

    def _reinitialize(self, variable, mask):
        distribution = self.distributions[variable.path]
        if self.reinit == "mean":
            distribution = inits.Distribution("constant", distribution.mean, 0)
        fresh = inits.sample(
            distribution, variable.shape, variable.dtype, self.seed_generator
        )
        resets.assign_units(variable, mask, fresh)
        if self.reset_optimizer:
            resets.reset_slots(self.optimizer, variable, mask)

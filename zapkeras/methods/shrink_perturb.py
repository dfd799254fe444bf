"""Shrink & Perturb and head reset, in their published forms.

Two forms, chosen by `interpolate_to`:

- None — Ash & Adams (2020): θ ← λ_s·θ + ε, ε ~ N(0, σ²), on every
  trainable weight. hernandez-garcia2025's S&P baseline (§3;
  docs/reference_codes.md §2.3) is the every-step case with λ_s = 1: its
  shrink is the optimizer's decoupled weight decay (SGDW/AdamW; in Keras
  the `weight_decay=` of any optimizer, see `zapkeras.methods.regularizers`),
  so S&P = weight decay +
  `ShrinkAndPerturb(interpolate_to=None, noise_std=√var, every='step')`.
- 'init' / 'noise' — lee2024 App. A.4 and the H&T repo
  (docs/reference_codes.md §3.2): at the end of every task
  θ ← (1 − λ)·θ + λ·τ, with λ_backbone for the body and λ_head for the head
  layers (0.8 for both there). τ = θ_0, the ORIGINAL initial weights, the
  same values every time ('init', as the reference); or a fresh draw from
  each weight's initial distribution ('noise', a new random initialisation
  as in Ash & Adams' perturbation).

Optional noise ε is added in every form. Only trainable floating weights
change (the reference touches `parameters()`, not BatchNorm statistics);
weights whose coefficient leaves them unchanged stay bit-identical.
`HeadReset` is λ_backbone = 0, λ_head = 1 (H&T repo; Nikishin et al.).
Everything runs in one compiled function in cross-replica context, so
every replica gets the same values.
"""

import keras
import tensorflow as tf
from keras import ops

from zapkeras import settings
from zapkeras import validate
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.methods import initial_weights as init_lib
from zapkeras.methods import inits
from zapkeras.methods import resets

TARGETS = (None, "init", "noise")
LEE2024_LAMBDA = 0.8
_INTERPOLATE_TO = settings.OneOf(
    *TARGETS, hint="use None (θ ← shrink·θ + noise), 'init' or 'noise'."
)


def _check_fraction(value, setting, upper=1.0, example=0.8):
    """`value` as a float in [0, upper] (upper inf: ≥ 0)."""
    high = None if upper == float("inf") else upper
    return validate.number(value, setting, low=0, high=high, example=example)


def _legacy_every(owner, every, every_n):
    """(n, unit) from the deprecated every='step'|'epoch'|'task', every_n=n."""
    if every not in ("step", "epoch", "task", "steps", "epochs", "tasks"):
        if every_n is not None:
            raise UsageError(
                f"{owner}.every_n is deprecated; give every=(n, unit) only."
            )
        return every
    return base.deprecated_every(
        owner, None, "every", every_n or 1, every.rstrip("s") + "s", None
    )


@settings.declared
class ShrinkAndPerturb(base.Method):
    """θ ← λ_s·θ + ε, or θ ← (1 − λ)·θ + λ·τ + ε, every n steps/epochs/tasks.

    Args:
      shrink: λ_s of the Ash & Adams form (interpolate_to=None); default 1.
      noise_std: σ of the Gaussian noise added (√ of the reference's
        `parameter_noise_var`); default 0.
      interpolate_to: None (Ash & Adams form), 'init' (default: toward the
        original initial weights, lee2024) or 'noise' (toward a fresh draw
        from each weight's initializer).
      lambda_backbone, lambda_head: λ in [0, 1] of the interpolation form
        for the body and for the `head` layers; default 0.8 (lee2024) and
        lambda_head = lambda_backbone.
      head: the name (or list of names) of the head layers.
      every: the cadence (n, 'steps' | 'epochs' | 'tasks'); default
        (1, 'tasks'), after every task (lee2024); (1, 'steps') for the
        hernandez-garcia2025 noise. every='task' with every_n=n is the
        deprecated spelling.
      initial_weights: θ_0 as `model.get_weights()`; default the weights
        at the first `on_train_begin`.
      init_overrides: for 'noise', {variable path: (kind, mean, scale)} for
        weights whose initializer is not understood
        (`zapkeras.methods.inits.distributions`).
      reset_optimizer: also zero the optimizer slots (e.g. Adam m, v) of
        the changed weights. Default False: the reference keeps them (and
        its protocol builds a new optimizer per task).
      seed: int seed of the noise and fresh draws; None takes the run's
        seed.

    Under ASB/MetaASB it acts on the wrapped classifier. Counter: `resets`
    (times applied).
    """

    name = "shrink_perturb"
    counter_names = ("resets",)

    _lambda_limit = 1.0
    _head_setting = "head"

    def __init__(
        self,
        shrink: settings.Maybe(settings.NonNegativeNumber(example=0.9)) = None,
        noise_std: settings.NonNegativeNumber(example=0.01) = 0.0,
        *,
        interpolate_to: _INTERPOLATE_TO = "init",
        lambda_backbone=None,
        lambda_head=None,
        head="classifier",
        every=(1, "tasks"),
        initial_weights=None,
        init_overrides=None,
        reset_optimizer: settings.Bool = False,
        seed=None,
        every_n=None,
    ):
        name = type(self).__name__
        every = _legacy_every(name, every, every_n)
        super().__init__(every, seed)
        if interpolate_to is None:
            if lambda_backbone is not None or lambda_head is not None:
                raise UsageError(
                    f"{name}.lambda_backbone/lambda_head belong to the "
                    "interpolation form; set interpolate_to='init' or "
                    "'noise', or use shrink= with interpolate_to=None."
                )
            shrink = 1.0 if shrink is None else shrink
            self._coefficients = (shrink, shrink)
        else:
            if shrink is not None:
                raise UsageError(
                    f"{name}.shrink = {shrink!r} belongs to the Ash & Adams "
                    "form θ ← shrink·θ + noise; set interpolate_to=None, or "
                    "use lambda_backbone/lambda_head to interpolate."
                )
            if lambda_backbone is None:
                lambda_backbone = LEE2024_LAMBDA
            if lambda_head is None:
                lambda_head = lambda_backbone
            lambda_backbone, lambda_head = (
                _check_fraction(value, f"{name}.{setting}", self._lambda_limit)
                for setting, value in (
                    ("lambda_backbone", lambda_backbone),
                    ("lambda_head", lambda_head),
                )
            )
            self._coefficients = (lambda_backbone, lambda_head)
        if initial_weights is not None and interpolate_to != "init":
            raise UsageError(
                f"{name}.initial_weights is used only with "
                "interpolate_to='init'."
            )
        if init_overrides is not None and interpolate_to != "noise":
            raise UsageError(
                f"{name}.init_overrides is used only with "
                "interpolate_to='noise'."
            )
        self.shrink = shrink
        self.noise_std = noise_std
        self.interpolate_to = interpolate_to
        self.head = [head] if isinstance(head, str) else list(head)
        self.initial_weights = initial_weights
        self.init_overrides = init_overrides
        self.reset_optimizer = reset_optimizer

    def checkpoint_items(self):
        """Trackables to save with the run: θ_0 and the noise stream."""
        return {**super().checkpoint_items(), "initial": self._initial}

    def build(self, model):
        names = [layer.name for layer in model.layers]
        missing = [name for name in self.head if name not in names]
        if missing and self.interpolate_to is not None:
            raise UsageError(
                f"{type(self).__name__}.{self._head_setting} = {missing} "
                f"not in model "
                f"{model.name!r}; name its head layers (e.g. 'classifier')."
            )
        head_ids = {
            id(v)
            for name in self.head
            if name in names
            for v in model.get_layer(name).trainable_variables
        }
        plan = []
        variables = init_lib.floating(model.trainable_variables)
        for variable in self._covered(variables, head_ids):
            coefficient = self._coefficients[id(variable) in head_ids]
            identity = 0.0 if self.interpolate_to else 1.0
            if coefficient != identity or self.noise_std > 0:
                plan.append((variable, coefficient))
        variables = [variable for variable, _ in plan]
        targets = [None] * len(plan)
        self._initial = []
        if self.interpolate_to == "init":
            self._initial = init_lib.snapshot(
                model, variables, self.initial_weights, type(self).__name__
            )
            targets = list(self._initial)
        elif self.interpolate_to == "noise":
            found = inits.distributions(
                model,
                variables,
                self.init_overrides,
                setting=f"{type(self).__name__}.init_overrides",
            )
            targets = [found[v.path] for v in variables]
        self._plan = [
            (variable, coefficient, target)
            for (variable, coefficient), target in zip(plan, targets)
        ]
        self._apply = tf.function(self._apply_all)

    def _covered(self, variables, head_ids):
        """The variables it may change (RegenerativeL2: all, or the
        reference's two)."""
        del head_ids
        return variables

    def _lambda_scale(self):
        """None, or a tensor multiplying every λ (RegenerativeL2: the LR)."""
        return None

    def _apply_all(self, scale):
        for variable, coefficient, target in self._plan:
            value = ops.convert_to_tensor(variable)
            factor = ops.cast(coefficient, value.dtype)
            if scale is not None:
                factor = factor * ops.cast(scale, value.dtype)
            if self.interpolate_to is None:
                new = value if coefficient == 1.0 else factor * value
            elif coefficient == 0.0:
                new = value
            else:
                if self.interpolate_to == "init":
                    goal = ops.convert_to_tensor(target)
                else:
                    goal = inits.sample(
                        target, value.shape, value.dtype, self.seed_generator
                    )
                if coefficient == 1.0 and scale is None:
                    new = goal
                else:
                    new = (1.0 - factor) * value + factor * goal
            if self.noise_std > 0:
                new = new + keras.random.normal(
                    value.shape,
                    stddev=self.noise_std,
                    dtype=value.dtype,
                    seed=self.seed_generator,
                )
            variable.assign(new)

    def act(self):
        self._apply(self._lambda_scale())
        if self.reset_optimizer and self.optimizer is not None:
            for variable, _, _ in self._plan:
                resets.reset_slots(self.optimizer, variable, True)
        self.count("resets")


@settings.declared
class HeadReset(ShrinkAndPerturb):
    """Restores the head to its original initial weights (the H&T repo's).

    At each task end (or every n steps/epochs) the `layer` weights return to
    their values at the first `on_train_begin` (λ_head = 1, body untouched,
    the reference's head reset), or with `resample=True` are drawn afresh
    from the layer's initializers (Nikishin et al.'s reset to a new random
    initialisation). `layer` may name several layers: resampling the top
    layers is berariu2021's partial reset (§2, Fig. 6). `reset_optimizer`
    zeroes their optimizer slots; `init_overrides` is as for
    `ShrinkAndPerturb`.
    """

    name = "head_reset"
    _head_setting = "layer"

    def __init__(
        self,
        layer="classifier",
        every=(1, "tasks"),
        every_n=None,
        *,
        resample: settings.Bool = False,
        initial_weights=None,
        init_overrides=None,
        reset_optimizer: settings.Bool = False,
        seed=None,
    ):
        super().__init__(
            interpolate_to="noise" if resample else "init",
            lambda_backbone=0.0,
            lambda_head=1.0,
            head=layer,
            every=_legacy_every(type(self).__name__, every, every_n),
            initial_weights=initial_weights,
            init_overrides=init_overrides,
            reset_optimizer=reset_optimizer,
            seed=seed,
        )
        self.resample = resample

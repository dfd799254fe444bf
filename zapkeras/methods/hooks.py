"""How a callback sees this step's gradients and hidden activations.

SWR needs each step's gradients, CBP and ReDo the hidden activations
(hernandez-garcia2025 Alg. 1; reference-implementations.md §2, §4–5), but
a Keras callback sees neither. `install` replaces the model's `train_step`
(an instance attribute, so a plain Keras model in the user's own
`model.fit` works) with Keras' own TF step (keras/src/backend/tensorflow/
trainer.py: forward with training=True, `compute_loss`, tape gradient,
`apply_gradients`, loss tracker and metrics alike) that also runs one
multi-output functional model sharing the layers, to get the outputs of
the layers observers asked for, and then, after the optimizer step, calls
every observer's `observe(StepData)` in replica context with the
all-reduced (global mean) gradients and this replica's activations.

Observers write statistics with `assign_all` into variables created by
`StepCallback.add_state` (aggregation "only_first_replica"), so replicas
agree; weights are only reset in `on_train_batch_end` (cross-replica
context), never inside the step (ecosystem-notes.md §0 item 1). tf.cond
around a synchronisation point fails under MirroredStrategy, so observers
compute their statistics every step, unconditionally; asking for
gradients costs one extra all-reduce of the gradients per step. The hook
stays installed after `fit`, so later fits reuse the traced step (one
`fit` per task would otherwise retrace every task) and its observers keep
their statistics current even in a fit that does not list them;
`uninstall` detaches an observer.
"""

import typing
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras.src.losses.loss import unscale_loss_for_distribution

from zapkeras.errors import UsageError
from zapkeras.methods import resets

_ATTR = "_zapkeras_step_hook"


class StepData(typing.NamedTuple):
    """What observers see after the optimizer step.

    variables: model.trainable_weights (already updated); gradients: the
    global mean gradients, aligned with `variables` (None entries where a
    variable got none), or None when no observer asked for them;
    activations: {layer name: this replica's output of that layer}.
    """

    x: typing.Any
    y: typing.Any
    sample_weight: typing.Any
    variables: list
    gradients: typing.Optional[list]
    activations: dict


class _Hook:
    """The observers of one model and the train_step that feeds them."""

    def __init__(self, model):
        self.model = model
        self.observers = []
        self.layers = []
        self.tap = None

    def refresh(self):
        layers = {}
        for observer in self.observers:
            layers.update((id(layer), layer) for layer in observer.observed)
        self.layers = list(layers.values())
        self.tap = None
        if self.layers:
            model = getattr(self.model, "_functional", None) or self.model
            self.tap = keras.Model(
                model.input,
                [model._outputs_struct, [lay.output for lay in self.layers]],
            )

    def gradients_needed(self):
        return any(observer.gradients_needed for observer in self.observers)

    def train_step(self, data):
        model = self.model
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        taps = []
        with tf.GradientTape() as tape:
            if self.tap is not None:
                y_pred, taps = self.tap(x, training=True)
            elif model._call_has_training_arg:
                y_pred = model(x, training=True)
            else:
                y_pred = model(x)
            loss = model._compute_loss(
                x=x,
                y=y,
                y_pred=y_pred,
                sample_weight=sample_weight,
                training=True,
            )
            first = next(i for i in keras.tree.flatten(x) if i is not None)
            model._loss_tracker.update_state(
                unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(first)[0],
            )
            if model.optimizer is not None:
                loss = model.optimizer.scale_loss(loss)
        variables = model.trainable_weights
        reduced = None
        if variables:
            gradients = tape.gradient(loss, variables)
            model.optimizer.apply_gradients(zip(gradients, variables))
            if self.gradients_needed():
                reduced = _global_gradients(model.optimizer, gradients)
        else:
            warnings.warn("The model does not have any trainable weights.")
        step = StepData(
            x,
            y,
            sample_weight,
            variables,
            reduced,
            {layer.name: tap for layer, tap in zip(self.layers, taps)},
        )
        for observer in self.observers:
            observer.observe(step)
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _global_gradients(optimizer, gradients):
    """Sum over replicas of the (already 1/replicas-scaled) gradients."""
    present = [g for g in gradients if g is not None]
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        present = context.all_reduce(tf.distribute.ReduceOp.SUM, present)
    scale = getattr(optimizer, "dynamic_scale", None)  # LossScaleOptimizer
    if scale is not None:
        present = [g / tf.cast(scale, g.dtype) for g in present]
    it = iter(present)
    return [None if g is None else next(it) for g in gradients]


def install(model, observer):
    """Lets `observer` see every training step of `model` (idempotent).

    The observer provides `observed` (layers whose outputs it wants),
    `gradients_needed` (bool) and `observe(step_data)`.
    """
    hook = model.__dict__.get(_ATTR)
    if hook is None:
        hook = _Hook(model)
        object.__setattr__(model, _ATTR, hook)
        object.__setattr__(model, "train_step", hook.train_step)
    if observer in hook.observers:
        return
    hook.observers.append(observer)
    hook.refresh()
    model.train_function = None  # retrace with the new step


def uninstall(model, observer):
    """Detaches `observer`; the last one restores Keras' own train_step."""
    hook = model.__dict__.get(_ATTR)
    if hook is None or observer not in hook.observers:
        return
    hook.observers.remove(observer)
    hook.refresh()
    if not hook.observers:
        object.__delattr__(model, _ATTR)
        object.__delattr__(model, "train_step")
    model.train_function = None


def observers(model):
    """The observers installed on `model`."""
    hook = model.__dict__.get(_ATTR)
    return list(hook.observers) if hook else []


def assign_all(variables, values):
    """variables[i] ← values[i] on every replica, one merge_call in all.

    Call from `observe` (replica context) with values that are equal on
    all replicas (reduced statistics): the first replica's are written.
    """

    def write(*values):
        for variable, value in zip(variables, values):
            variable.assign(value)

    if variables:
        resets.in_cross_replica_context(write, *values)


def global_unit_means(tensors):
    """Per-unit means of each tensor over all axes but the last, global.

    Each replica's sums and example counts are all-reduced, so the means
    are over the global batch even if replicas hold unequal shares.
    """
    sums = [
        tf.reduce_sum(t, axis=list(range(len(t.shape) - 1))) for t in tensors
    ]
    counts = [tf.cast(tf.size(t) // tf.shape(t)[-1], t.dtype) for t in tensors]
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        sums, counts = context.all_reduce(
            tf.distribute.ReduceOp.SUM, (sums, counts)
        )
    return [s / c for s, c in zip(sums, counts)]


class StepCallback(keras.callbacks.Callback):
    """Base of the callbacks that act after training steps (SWR, CBP, ReDo).

    On `set_model` (once per model) it creates, under the model's strategy
    scope, a step counter, a `keras.random.SeedGenerator(seed)` for fresh
    draws and the subclass's state (`build`, using `add_state`), then
    installs itself as an observer if it wants gradients or activations.
    After each step `after_step(step)` runs in cross-replica context with
    the 1-based number of steps taken under this callback. Everything that
    a resumed run needs is in `checkpoint_items()` (for tf.train.Checkpoint).
    """

    observed = ()
    gradients_needed = False

    def __init__(self, seed):
        super().__init__()
        if seed is not None and not (
            isinstance(seed, (int, np.integer)) and seed >= 0
        ):
            raise UsageError(
                f"{type(self).__name__}.seed = {seed!r}; use a non-negative "
                "integer (or None for 0)."
            )
        self.seed = None if seed is None else int(seed)
        self._state_model = None
        self._state = {}

    def add_state(self, name, value, dtype="float32"):
        """A state variable (only_first_replica), kept for checkpoints."""
        variable = keras.Variable(
            value,
            dtype=dtype,
            trainable=False,
            aggregation="only_first_replica",
            name=name.replace("/", "_"),
        )
        self._state[name] = variable
        return variable

    def build(self, model):
        """Creates the method's state for `model` (under its scope)."""

    def needs_hook(self):
        """Whether `observe` must run after every step."""
        return bool(self.observed) or self.gradients_needed

    def observe(self, step):
        """Records statistics of one step (replica context)."""

    def after_step(self, step):
        """Acts after step number `step` (cross-replica context)."""

    def set_model(self, model):
        super().set_model(model)
        if self._state_model is not model:
            if not model.built:
                raise UsageError(
                    f"{type(self).__name__}: model {model.name!r} is not "
                    "built; start it from keras.Input (or call model.build) "
                    "before fit."
                )
            self._state = {}
            with model.distribute_strategy.scope():
                self.steps = self.add_state("steps", 0, dtype="int64")
                self.seed_generator = keras.random.SeedGenerator(self.seed or 0)
                self.build(model)
            self._state_model = model
        if self.needs_hook():
            install(model, self)

    def on_train_begin(self, logs=None):
        if self.model.steps_per_execution != 1:
            raise UsageError(
                f"{type(self).__name__} acts after every training step; "
                f"compile with steps_per_execution=1 (got "
                f"{self.model.steps_per_execution})."
            )

    def on_train_batch_end(self, batch, logs=None):
        self.steps.assign_add(1)
        self.after_step(int(self.steps.numpy()))

    def checkpoint_items(self):
        """{name: trackable} of all method state, for tf.train.Checkpoint.

        The state exists once the callback has seen the model: call
        `set_model(model)` (as `fit` does) before restoring into it.
        """
        if self._state_model is None:
            raise UsageError(
                f"{type(self).__name__}.checkpoint_items() before the "
                "callback has a model; call callback.set_model(model) first."
            )
        return {**self._state, "seed": self.seed_generator.state}

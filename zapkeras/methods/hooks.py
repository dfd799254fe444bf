"""The trainer contract: what every trainer shows the methods after a step.

SWR needs each step's gradients, CBP and ReDo the hidden activations
(hernandez-garcia2025 Alg. 1; Dohare et al. 2024; Sokar et al. 2023), but a
Keras callback sees neither. Every trainer therefore hands its observers a
`StepData` after the update it applied:

- a plain Keras model (any `model.fit`, including the continual protocol's
  one fit per task): `install` replaces its `train_step` (an instance
  attribute) with Keras' own TF step (forward with training=True, compiled
  loss, tape gradient, `apply_gradients`, loss tracker and metrics) that
  also returns the observed layers' outputs from the same forward pass;
- a `Trainer` (ASB, MetaASB and their ANML/OML variants) calls
  `stateless_forward` for the loss of the update it applies and `notify`
  after it: the gradients of that outer step and the observed layers'
  outputs on its meta batch.

Either way the model that methods read and reset is `target(trainer)`: the
plain model itself, or the classifier a Trainer wraps, never the wrapper.
Observers run in replica context with the all-reduced (global mean)
gradients and this replica's activations; they write statistics with
`assign_all` (one value on every replica) and reset weights only from
callback hooks, in cross-replica context. tf.cond around a synchronisation
point fails under MirroredStrategy, so observers compute their statistics
every step, unconditionally. The hook stays installed after `fit`, so later
fits reuse the traced step; `uninstall` detaches an observer.
"""

import typing
import warnings

import keras
import tensorflow as tf

from zapkeras import compat
from zapkeras import compile_options
from zapkeras.errors import UsageError
from zapkeras.methods import resets

_ATTR = "_zapkeras_step_observers"


class StepData(typing.NamedTuple):
    """What observers see after the optimizer step.

    variables: the target's trainable weights (already updated);
    gradients: the global mean gradients of the applied update, aligned
    with `variables` (None entries where a variable got none), or None when
    no observer asked for them; activations: {layer name: this replica's
    output of that layer on the step's batch}.
    """

    x: typing.Any
    y: typing.Any
    sample_weight: typing.Any
    variables: list
    gradients: typing.Optional[list]
    activations: dict


class Trainer:
    """Mixin of Keras models that train another model, `method_target`.

    Such a trainer feeds observers itself (`stateless_forward`, `notify`),
    so `install` leaves its `train_step` alone.
    """

    @property
    def method_target(self):
        raise NotImplementedError


def target(trainer):
    """The model whose layers methods observe and whose weights they reset."""
    return trainer.method_target if isinstance(trainer, Trainer) else trainer


class _Observers:
    """The observers of one trainer and the tap model that feeds them."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.target = target(trainer)
        self.observers = []
        self.layers = []
        self.tap = None
        self._order = None

    def refresh(self):
        layers = {}
        for observer in self.observers:
            layers.update((id(layer), layer) for layer in observer.observed)
        self.layers = list(layers.values())
        self.tap = self._order = None
        if not self.layers:
            return
        model = self.target
        if compat.functional(model) is None:
            raise UsageError(
                f"model {model.name!r} is not a built functional or "
                "Sequential model; methods that read hidden activations "
                "need its layer graph: build it from keras.Input."
            )
        self.tap = keras.Model(
            compat.functional(model).input,
            [
                compat.output_structure(model),
                [layer.output for layer in self.layers],
            ],
        )
        # The tap shares the target's variables; map the target's order.
        position = {
            id(v): i for i, v in enumerate(self.tap.trainable_variables)
        }
        state = {
            id(v): i for i, v in enumerate(self.tap.non_trainable_variables)
        }
        self._order = (
            [position[id(v)] for v in model.trainable_variables],
            [state[id(v)] for v in model.non_trainable_variables],
        )

    def gradients_needed(self):
        return any(observer.gradients_needed for observer in self.observers)

    def named(self, taps):
        """{layer name: output}; 16-bit outputs (a mixed policy) in
        float32, so that utilities are never accumulated in 16 bits."""
        return {
            layer.name: compile_options.full_precision(tap)
            for layer, tap in zip(self.layers, taps)
        }

    def stateless_forward(self, trainable, non_trainable, x, training=True):
        """target.stateless_call plus the observed outputs."""
        if self.tap is None:
            y_pred, state = self.target.stateless_call(
                trainable, non_trainable, x, training=training
            )
            return y_pred, {}, state
        order_t, order_s = self._order
        tap_t, tap_s = [None] * len(order_t), [None] * len(order_s)
        for value, i in zip(trainable, order_t):
            tap_t[i] = value
        for value, i in zip(non_trainable, order_s):
            tap_s[i] = value
        (y_pred, taps), tap_state = self.tap.stateless_call(
            tap_t, tap_s, x, training=training
        )
        state = [tap_state[i] for i in order_s]
        return y_pred, self.named(taps), state

    def train_step(self, data):
        """Keras' TF train_step, plus the observers (module docstring)."""
        model = self.trainer
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        taps = []
        with tf.GradientTape() as tape:
            if self.tap is not None:
                y_pred, taps = self.tap(x, training=True)
            else:
                y_pred = compat.call_for_training(model, x)
            loss = compat.compute_loss(model, x, y, y_pred, sample_weight)
            first = next(i for i in keras.tree.flatten(x) if i is not None)
            compat.track_loss(model, loss, tf.shape(first)[0])
            if model.optimizer is not None:
                loss = model.optimizer.scale_loss(loss)
        variables = model.trainable_weights
        reduced = None
        if variables:
            gradients = tape.gradient(loss, variables)
            model.optimizer.apply_gradients(zip(gradients, variables))
            if self.gradients_needed():
                reduced = global_gradients(model.optimizer, gradients)
        else:
            warnings.warn("The model does not have any trainable weights.")
        self.notify(
            StepData(x, y, sample_weight, variables, reduced, self.named(taps))
        )
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def notify(self, step):
        for observer in self.observers:
            observer.observe(step)


def _observers(trainer):
    return trainer.__dict__.get(_ATTR)


def stateless_forward(trainer, trainable, non_trainable, x, training=True):
    """For Trainers: the target's forward at the given weights, returning
    (outputs, {observed layer name: output}, new non-trainable state)."""
    hub = _observers(trainer)
    if hub is None:
        y_pred, state = target(trainer).stateless_call(
            trainable, non_trainable, x, training=training
        )
        return y_pred, {}, state
    return hub.stateless_forward(trainable, non_trainable, x, training)


def gradients_needed(trainer):
    """Whether any observer of `trainer` reads the step's gradients."""
    hub = _observers(trainer)
    return hub is not None and hub.gradients_needed()


def notify(trainer, step):
    """For Trainers: hands `step` (a StepData) to the observers."""
    hub = _observers(trainer)
    if hub is not None:
        hub.notify(step)


def global_gradients(optimizer, gradients):
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


def install(trainer, observer):
    """Lets `observer` see every training step of `trainer` (idempotent).

    The observer provides `observed` (layers of the target whose outputs
    it wants), `gradients_needed` (bool) and `observe(step_data)`. A model
    with its own `train_step` that is not a `Trainer` cannot be observed.
    """
    hub = _observers(trainer)
    if hub is None:
        own_step = type(trainer).train_step is not keras.Model.train_step
        if own_step and not isinstance(trainer, Trainer):
            raise UsageError(
                f"{type(observer).__name__} reads each training step, but "
                f"{type(trainer).__name__} {trainer.name!r} has its own "
                "train_step; fit a plain Keras model, ASB or MetaASB, or "
                "call zapkeras.methods.hooks.notify from that train_step."
            )
        hub = _Observers(trainer)
        object.__setattr__(trainer, _ATTR, hub)
        if not isinstance(trainer, Trainer):
            object.__setattr__(trainer, "train_step", hub.train_step)
    if observer in hub.observers:
        return
    hub.observers.append(observer)
    hub.refresh()
    trainer.train_function = None  # retrace with the new step


def uninstall(trainer, observer):
    """Detaches `observer`; the last one restores the trainer's own step."""
    hub = _observers(trainer)
    if hub is None or observer not in hub.observers:
        return
    hub.observers.remove(observer)
    hub.refresh()
    if not hub.observers:
        object.__delattr__(trainer, _ATTR)
        if "train_step" in trainer.__dict__:
            object.__delattr__(trainer, "train_step")
    trainer.train_function = None


def observers(trainer):
    """The observers installed on `trainer`."""
    hub = _observers(trainer)
    return list(hub.observers) if hub else []


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

"""Hare & Tortoise, its EMA baseline and self-distillation (lee2024 §4).

The tortoise is an exponential moving average of the hare (the trained
model), θ_t ← μ·θ_t + (1 − μ)·θ_h after every optimizer step (§4.2), taken
over all of `model.weights`: trainable weights AND non-trainable state such
as BatchNorm moving statistics, as the H&T repo averages parameters and
buffers (docs/reference_codes.md §3.1). It starts as a copy of the
initial hare. Periodically the hare ← tortoise, a value copy; the optimizer
state is kept, as in the repo (whose protocol builds a new AdamW per task).
The paper predicts with the tortoise. (Alg. 1's pseudocode writes the
average into the hare and resets every r steps; §4.2's equations, §4.3's
"every 10 epoch" and the repo agree on what is implemented here.)
Without resets this is the EMA baseline; `SelfDistillation` adds a KL term
toward the same EMA as a teacher.

All EMA updates and copies run in one compiled function in cross-replica
context (a callback hook, or `merge_call` from `train_step`), so every
replica holds the same tortoise.
"""

import keras
import tensorflow as tf
from keras import ops

from zapkeras import compile_options
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.methods import resets

RESET_SCHEDULES = ("reference", "every")
KL_REDUCTIONS = ("batchmean", "reference")
_MOMENTUM = settings.Fraction(high_open=True, example="0.999 (lee2024)")
_RESET_SCHEDULE = settings.OneOf(
    *RESET_SCHEDULES,
    hint="use 'reference' (after epochs 0, r, 2r, ...) or 'every' (after "
    "every r epochs).",
)
_KL_REDUCTION = settings.OneOf(
    *KL_REDUCTIONS, hint="use 'batchmean' or 'reference'."
)


@settings.declared
class ExponentialAverage:
    """An EMA copy of `model.weights` in variables on the model's strategy.

    `variables` follow `model.weights` order. Non-floating weights (int
    counters) are copied, not averaged.
    """

    def __init__(self, model, momentum: _MOMENTUM):
        self.momentum = momentum
        self.sources = list(model.weights)
        with model.distribute_strategy.scope():
            self.variables = [
                keras.Variable(
                    ops.convert_to_tensor(source),
                    dtype=source.dtype,
                    trainable=False,
                    name=source.path.replace("/", "_") + "_average",
                )
                for source in self.sources
            ]
        self._index = {
            id(source): average
            for source, average in zip(self.sources, self.variables)
        }
        self._update = tf.function(self._update_all)
        self._copy = tf.function(self._copy_all)

    def _update_all(self):
        for average, source in zip(self.variables, self.sources):
            value = ops.convert_to_tensor(source)
            if tf.as_dtype(value.dtype).is_floating:
                keep = ops.cast(self.momentum, value.dtype)
                take = ops.cast(1.0 - self.momentum, value.dtype)
                value = keep * ops.convert_to_tensor(average) + take * value
            average.assign(value)

    def _copy_all(self):
        for average, source in zip(self.variables, self.sources):
            source.assign(ops.convert_to_tensor(average))

    def update(self):
        """averages ← μ·averages + (1 − μ)·weights, once for all replicas."""
        resets.in_cross_replica_context(self._update)

    def copy_to_model(self):
        """model weights ← averages (a value copy), once for all replicas."""
        resets.in_cross_replica_context(self._copy)

    def values_for(self, variables):
        """The averages of `variables`; a variable not averaged (e.g. a
        seed generator's state) stands for itself."""
        return [
            ops.convert_to_tensor(self._index.get(id(v), v)) for v in variables
        ]


@settings.declared
class HareTortoise(base.Method):
    """Hare & Tortoise (lee2024 Alg. 1) as a method on any trainer.

    Under ASB/MetaASB the hare is the wrapped classifier and the tortoise
    the EMA of its weights after each outer step (for MetaASB: of θ_0).

    Args:
      momentum: μ of the tortoise EMA, in [0, 1); 0.999 (lee2024).
      every: (r, unit), the reset period; (10, 'epochs') (lee2024), epochs
        of each fit (one fit per task in the continual protocol).
        `reset_every_epochs=r` is the deprecated spelling.
      reset: False gives the EMA baseline (no resets; evaluate the
        tortoise).
      reset_schedule: 'reference' (default) resets after epochs e with
        e % r == 0, i.e. after epochs 0, r, 2r, ... (0-based), as the H&T
        repo; the paper only says "every 10 epochs", and its numbers come
        from that code. 'every' resets after every r finished epochs.
      reset_optimizer: also zero every optimizer slot at a reset (default
        False, as the reference); the step count is kept.
      validation_data: (x, y) or a dataset; when given, the tortoise is
        evaluated after every epoch and its metrics are added to the logs
        as `tortoise_<name>` (e.g. tortoise_accuracy).

    The tortoise is created when the method first sees the model (the
    start of `fit`) from the hare's weights then; `checkpoint_items()`
    saves it with the run. `history` lists the epochs after which the hare
    was reset; counter `resets`. `eval_models()` gives the tortoise.
    """

    name = "hare_tortoise"
    counter_names = ("resets",)

    def __init__(
        self,
        momentum: _MOMENTUM = 0.999,
        every=None,
        reset: settings.Bool = True,
        *,
        reset_schedule: _RESET_SCHEDULE = "reference",
        reset_optimizer: settings.Bool = False,
        validation_data=None,
        reset_every_epochs=None,
    ):
        every = base.deprecated_every(
            "HareTortoise",
            every,
            "reset_every_epochs",
            reset_every_epochs,
            "epochs",
            (10, "epochs"),
        )
        super().__init__(every)
        self.momentum = momentum
        self.reset = reset
        self.reset_schedule = reset_schedule
        self.phase = 1 if reset_schedule == "reference" else 0
        self.reset_optimizer = reset_optimizer
        self.validation_data = validation_data
        self.history = []
        self._tortoise = None
        self._clone = None

    def build(self, model):
        self._tortoise = ExponentialAverage(model, self.momentum)
        self._clone = None

    def checkpoint_items(self):
        """Trackables to save with the run: the tortoise weights."""
        return {**super().checkpoint_items(), "tortoise": self.tortoise_weights}

    @property
    def tortoise_weights(self):
        """The tortoise's variables, in `model.weights` order."""
        if self._tortoise is None:
            raise UsageError(
                "HareTortoise has no tortoise yet; it is created when "
                "model.fit(callbacks=[...]) starts (or call set_model)."
            )
        return list(self._tortoise.variables)

    def after_step(self, step):
        self._tortoise.update()

    def act(self):
        if not self.reset:
            return
        self._tortoise.copy_to_model()
        if self.reset_optimizer:
            for variable in self.target.trainable_variables:
                resets.reset_slots(self.optimizer, variable, True)
        self.history.append(self.moment)
        self.count("resets")

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.validation_data is not None and logs is not None:
            data = self.validation_data
            x, y = data if isinstance(data, tuple) else (data, None)
            results = self.evaluate_tortoise(x, y)
            logs.update({f"tortoise_{k}": v for k, v in results.items()})

    def eval_models(self):
        return {"tortoise": self.tortoise_model()}

    def tortoise_model(self):
        """A clone of the target holding the current tortoise weights.

        Built once (under the target's strategy scope, compiled like the
        target when it is compiled), refreshed on every call. Needs a
        functional or Sequential model (`keras.models.clone_model`).
        """
        weights = self.tortoise_weights
        model = self.target
        if self._clone is None:
            with model.distribute_strategy.scope():
                clone = keras.models.clone_model(model)
                config = model.get_compile_config()
                if config:
                    clone.compile_from_config(config)
            shapes = [tuple(w.shape) for w in clone.weights]
            if shapes != [tuple(w.shape) for w in weights]:
                raise UsageError(
                    f"HareTortoise: a clone of model {model.name!r} "
                    "has other weights; use a functional or Sequential "
                    "model."
                )
            self._clone = clone
        for target, value in zip(self._clone.weights, weights):
            target.assign(value)
        return self._clone

    def evaluate_tortoise(self, x, y=None, **kwargs):
        """`evaluate` of the tortoise (a dict of the compiled metrics)."""
        kwargs.setdefault("verbose", 0)
        return self.tortoise_model().evaluate(x, y, return_dict=True, **kwargs)


@settings.declared
class SelfDistillation(keras.Model):
    """Self-distillation toward an EMA teacher (lee2024 §5 baseline).

    Wraps a built classifier `model` returning logits; compile the wrapper
    like the model (loss, metrics) and fit it. Each step minimises the
    compiled loss + weight·KL(p_teacher ‖ p_student) at temperature T,
    then updates the teacher θ_T ← μ·θ_T + (1 − μ)·θ (the tortoise of
    `HareTortoise`, never reset). The teacher predicts in inference mode
    and starts as a copy of `model`; its weights (`teacher_weights`) are
    non-trainable weights of the wrapper, so they checkpoint with it.
    The KL term is logged as `distillation_loss`.

    Args:
      model: the student; the wrapper trains its variables in place.
      teacher_momentum: μ, in [0, 1); 0.999 (lee2024).
      weight: λ of the KL term; 1 (H&T repo; the paper tuned 1, 5, 10).
      temperature: T of both softmaxes; 1 (H&T repo). No T² factor, as
        the repo.
      kl_reduction: 'batchmean' (default: the KL of each example, averaged
        over the batch) or 'reference' (the repo's `nn.KLDivLoss()` mean
        over batch AND classes, i.e. divided by the number of classes).
    """

    def __init__(
        self,
        model,
        teacher_momentum: _MOMENTUM = 0.999,
        weight: settings.NonNegativeNumber = 1.0,
        temperature: settings.PositiveNumber = 1.0,
        *,
        kl_reduction: _KL_REDUCTION = "batchmean",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not model.built:
            raise UsageError(
                f"model {model.name!r} is not built; build it (call it on a "
                "batch, or give it an Input) before wrapping it."
            )
        self.weight = weight
        self.temperature = temperature
        self.kl_reduction = kl_reduction
        self.model = model
        self._teacher = ExponentialAverage(model, teacher_momentum)
        self.teacher_weights = self._teacher.variables
        self.distillation_tracker = keras.metrics.Mean("distillation_loss")
        self.built = True

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def teacher_logits(self, x):
        """The teacher's logits on `x` (inference mode, no gradient)."""
        logits, _ = self.model.stateless_call(
            self._teacher.values_for(self.model.trainable_variables),
            self._teacher.values_for(self.model.non_trainable_variables),
            x,
            training=False,
        )
        return ops.stop_gradient(logits)

    def distillation(self, logits, teacher_logits):
        """Per-example KL(p_teacher ‖ p_student) at the temperature; 16-bit
        logits in float32, as the compiled loss."""
        logits = compile_options.full_precision(logits)
        teacher_logits = compile_options.full_precision(teacher_logits)
        student = ops.log_softmax(logits / self.temperature, axis=-1)
        teacher = ops.log_softmax(teacher_logits / self.temperature, axis=-1)
        kl = ops.sum(ops.exp(teacher) * (teacher - student), axis=-1)
        if self.kl_reduction == "reference":
            kl = kl / ops.cast(ops.shape(logits)[-1], kl.dtype)
        return kl

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """The compiled loss, plus weight·KL when training.

        The compiled loss comes pre-divided by the number of replicas
        (Keras' Loss scaling); the KL term is divided the same way, so the
        replicas' summed gradients are those of the global batch mean.
        """
        loss = super().compute_loss(
            x, y, y_pred, sample_weight, training=training
        )
        if not training:
            return loss
        distill = ops.mean(self.distillation(y_pred, self.teacher_logits(x)))
        self.distillation_tracker.update_state(distill)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss + ops.cast(self.weight / replicas, loss.dtype) * distill

    def train_step(self, data):
        """Keras' step on the student, then the teacher's EMA update."""
        logs = super().train_step(data)
        self._teacher.update()
        return logs

"""What one task's `model.fit` needs beyond Keras: seen-class masking, a
learning rate restarted every task, online accuracy, best-model restore.

- `SeenClasses`: logits of classes not seen yet are set to a large
  negative number before the loss and the accuracy, for any model (class-
  incremental logit slicing of hernandez-garcia2025 §5): a loss and a
  metric read the count from a variable set at each task's start.
- `TaskLearningRate`: constant; linear warm-up from 0 over a fraction of
  the task's steps, then constant (lee2024 App. A.3: ratio 0.1); or
  PyTorch's OneCycleLR with linear annealing (pct_start 0.3, div 25,
  final div 1e4), restarted every task as in the SWR ViT protocol (its
  momentum cycling is not reproduced: Keras' SGD momentum is fixed).
- `BatchRecorder`: the accuracy and loss of every training batch, from the
  training step's own metrics, i.e. measured on the batch before the update
  it causes: the online accuracy of hernandez-garcia2025 §3.
- `BestWeights`: keeps the weights of the epoch with the best validation
  accuracy within a task and restores them at the task's end
  (`use_best_network` of the SWR ViT protocol).
"""

import itertools
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zapkeras import compile_options
from zapkeras import settings
from zapkeras.errors import UsageError

# BatchRecorder's tags: curves within tasks, at the global step.
_PREFIX = "continual/steps"

_NEG = -1e9


class SeenClasses:
    """The number of classes the logits may use, as a variable.

    Its loss and metrics are registered Keras objects that find this
    instance by key, so a compiled model's compile config can be rebuilt
    in the same process (e.g. by `HareTortoise.tortoise_model`).
    """

    _instances = weakref.WeakValueDictionary()
    _keys = itertools.count()

    def __init__(self, num_classes):
        self.num_classes = num_classes
        self.count = tf.Variable(num_classes, dtype=tf.int32, trainable=False)
        self.key = f"seen_{next(self._keys)}"
        self._instances[self.key] = self

    @classmethod
    def find(cls, key):
        return cls._instances[key]

    def mask(self, logits):
        """`logits` (16-bit ones in float32, as the loss computes; float16
        has no −1e9), those of classes not seen yet set to −1e9."""
        logits = compile_options.full_precision(logits)
        keep = ops.arange(ops.shape(logits)[-1]) < ops.cast(self.count, "int32")
        return ops.where(keep, logits, ops.cast(_NEG, logits.dtype))

    def cross_entropy(self, y, logits):
        """Per-example CE on masked logits (functional: no replica scaling)."""
        return keras.losses.sparse_categorical_crossentropy(
            y, self.mask(logits), from_logits=True
        )

    def accuracy(self, y, logits):
        return keras.metrics.sparse_categorical_accuracy(y, self.mask(logits))

    def compile(self, model, optimizer=None, jit_compile=False, penalty=None):
        """Compiles `model` with the masked loss (+ `penalty.penalty` of the
        logits, e.g. SpectralDecoupling's), accuracy and CE metrics."""
        model.compile(
            optimizer=optimizer,
            jit_compile=jit_compile,
            loss=MaskedCrossEntropy(self.key, penalty),
            metrics=[
                MaskedMetric(self.key, "accuracy"),
                MaskedMetric(self.key, "ce"),
            ],
        )


@keras.saving.register_keras_serializable(package="zapkeras")
class MaskedCrossEntropy(keras.losses.Loss):
    """Sparse CE from logits, classes not seen yet masked out, plus an
    optional `penalty.penalty(logits)` per example (of all the logits, in
    full precision: SpectralDecoupling penalises the network's outputs)."""

    def __init__(
        self, seen_key, penalty=None, name="masked_cross_entropy", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.seen_key = seen_key
        if isinstance(penalty, dict):  # from get_config
            penalty = keras.saving.deserialize_keras_object(penalty)
        self.penalty = penalty

    def call(self, y_true, y_pred):
        loss = SeenClasses.find(self.seen_key).cross_entropy(y_true, y_pred)
        if self.penalty is not None:
            logits = compile_options.full_precision(y_pred)
            loss = loss + self.penalty.penalty(logits)
        return loss

    def get_config(self):
        return {
            **super().get_config(),
            "seen_key": self.seen_key,
            "penalty": keras.saving.serialize_keras_object(self.penalty),
        }


@keras.saving.register_keras_serializable(package="zapkeras")
class MaskedMetric(keras.metrics.MeanMetricWrapper):
    """Mean masked accuracy ('accuracy') or CE ('ce') over examples."""

    def __init__(self, seen_key, kind, name=None, dtype=None):
        seen = SeenClasses.find(seen_key)
        fn = {"accuracy": seen.accuracy, "ce": seen.cross_entropy}[kind]
        super().__init__(fn, name=name or kind, dtype=dtype)
        self.seen_key, self.kind = seen_key, kind

    def get_config(self):
        return {"seen_key": self.seen_key, "kind": self.kind, "name": self.name}


SCHEDULES = ("constant", "warmup", "one_cycle")


@settings.declared("continual_learning")
def check_schedule(
    learning_rate: settings.PositiveNumber(example=0.05),
    lr_schedule: settings.OneOf(*SCHEDULES),
    warmup_fraction: settings.Fraction(example=0.1),
):
    """The continual schedule settings, normalised; UsageError unless
    they are valid."""
    return learning_rate, lr_schedule, warmup_fraction


@keras.saving.register_keras_serializable(package="zapkeras")
class TaskLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule that restarts at `begin_task`."""

    def __init__(
        self,
        learning_rate,
        kind="constant",
        warmup_fraction=0.1,
        pct_start=0.3,
        div_factor=25.0,
        final_div_factor=1e4,
    ):
        self.learning_rate, self.kind, self.warmup_fraction = check_schedule(
            learning_rate, kind, warmup_fraction
        )
        self.pct_start = pct_start
        self.div_factor = div_factor
        self.final_div_factor = final_div_factor
        self.start = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.steps = tf.Variable(1, dtype=tf.int64, trainable=False)

    def begin_task(self, start, steps):
        """The task starts at optimizer iteration `start`, lasts `steps`."""
        self.start.assign(int(start))
        self.steps.assign(max(int(steps), 1))

    def __call__(self, step):
        # float64: the one-cycle tail (1e-4 of a 1e-3 peak) would cancel
        t = tf.cast(tf.cast(step, tf.int64) - self.start, tf.float64)
        n = tf.cast(self.steps, tf.float64)
        peak = self.learning_rate
        if self.kind == "constant":
            rate = tf.constant(peak, tf.float64)
        elif self.kind == "warmup":
            warm = tf.maximum(self.warmup_fraction * n, 1.0)
            rate = peak * tf.minimum(t / warm, 1.0)
        else:
            low = peak / self.div_factor
            end = low / self.final_div_factor
            up = tf.maximum(self.pct_start * n - 1.0, 1.0)
            down = tf.maximum(n - up - 1.0, 1.0)
            rising = low + (peak - low) * tf.minimum(t / up, 1.0)
            falling = peak + (end - peak) * tf.minimum((t - up) / down, 1.0)
            rate = tf.where(t <= up, rising, falling)
        return tf.cast(rate, tf.float32)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "kind": self.kind,
            "warmup_fraction": self.warmup_fraction,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


class BatchRecorder(keras.callbacks.Callback):
    """Per-batch training accuracy and CE, read as differences of the
    training metrics' running totals (exact for any batch size, summed
    over replicas), and a global step that survives optimizer resets.

    Every `window` batches the window's mean accuracy and loss are written
    to TensorBoard as `continual/steps/online_accuracy` and `…/loss`, and
    each epoch's fit logs as `continual/steps/epoch_<metric>` (validation
    in the validation run), all at the global step.
    """

    def __init__(self, writer, window, global_step=0):
        super().__init__()
        self.writer = writer
        self.window = window
        self.global_step = global_step
        self.accuracy = []
        self.loss = []

    def begin(self):
        """A new task: its batches' records start empty."""
        self.accuracy, self.loss = [], []

    def _metric(self, name):
        for metric in self.model.metrics:
            for inner in getattr(metric, "metrics", [metric]):
                if inner.name == name:
                    return inner
        raise UsageError(
            f"the model was not compiled with a '{name}' metric; compile it "
            "with SeenClasses.compile."
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._sums = {"accuracy": (0.0, 0.0), "ce": (0.0, 0.0)}

    def _batch_value(self, name):
        metric = self._metric(name)
        total, count = float(metric.total.numpy()), float(metric.count.numpy())
        last_total, last_count = self._sums[name]
        self._sums[name] = (total, count)
        return (total - last_total) / max(count - last_count, 1e-12)

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        self.accuracy.append(self._batch_value("accuracy"))
        self.loss.append(self._batch_value("ce"))
        if len(self.accuracy) % self.window == 0:
            self.writer.scalars(
                _PREFIX,
                {
                    "online_accuracy": np.mean(self.accuracy[-self.window :]),
                    "loss": np.mean(self.loss[-self.window :]),
                },
                self.global_step,
            )

    def on_epoch_end(self, epoch, logs=None):
        self.writer.fit_logs(_PREFIX, logs, self.global_step, "epoch_{}")


class BestWeights(keras.callbacks.Callback):
    """Tracks the best `val_accuracy` of a task; `restore()` puts back the
    weights of that epoch. State lives in variables (checkpointed)."""

    def __init__(self, model):
        super().__init__()
        self._weights = [
            tf.Variable(tf.zeros(w.shape, w.dtype), trainable=False)
            for w in model.weights
        ]
        self._score = tf.Variable(-1.0, dtype=tf.float64, trainable=False)

    def checkpoint_items(self):
        return {"weights": self._weights, "score": self._score}

    def begin_task(self):
        self._score.assign(-1.0)

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get("val_accuracy")
        if score is not None and score > float(self._score.numpy()):
            self._score.assign(score)
            for best, current in zip(self._weights, self.model.weights):
                best.assign(current.value)

    def restore(self):
        """Best-epoch weights back into the model (no-op if none seen)."""
        if float(self._score.numpy()) < 0:
            return
        for best, current in zip(self._weights, self.model.weights):
            current.assign(best)

"""The learner every transfer protocol trains: a fresh head on a pretrained
body (frati2024 Alg. 2 and 3; docs/reference_codes.md §1.7, §1.8).

Linear probing freezes the body, so its features are computed once and the
head trains on them; full-model training updates body and head, and the
body's pretrained weights are restored before every run. The model stays in
inference mode throughout, as in the reference (frozen BatchNorm statistics).
Training takes whole slices of a trajectory and runs them as one compiled
loop of optimizer steps, traced once for all runs and learning rates. A
plain Keras Adam is applied with TF's fused `ResourceApplyAdam` kernel (the
same update, one pass over each variable instead of Keras' ~10 ops): at one
example per step the optimizer dominates a linear probe's step, and the
fused kernel made it ~2.5× faster (issue 7). So is a plain
`zapkeras.optimizers.TorchAdam`, whose update is the kernel's with
ε·√(1 − β2ᵗ) in place of ε (docs/reference_codes.md §1.13).
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zapkeras import models
from zapkeras.losses import per_example_cross_entropy
from zapkeras.methods import zapping
from zapkeras.methods.resets import optimizer_slots
from zapkeras.optimizers import TorchAdam

_EVAL_BATCH = 512


def _adam_slots(optimizer, variables):
    """[(variable, momentum, velocity)] when `optimizer` is a plain Keras
    Adam or TorchAdam whose update TF's fused kernel computes exactly, on
    variables that are not distributed (the kernel writes one copy); else
    None."""
    plain = (
        type(optimizer) in (keras.optimizers.Adam, TorchAdam)
        and not optimizer.amsgrad
        and not optimizer.use_ema
        and all(
            getattr(optimizer, name) is None
            for name in (
                "weight_decay",
                "clipnorm",
                "clipvalue",
                "global_clipnorm",
                "gradient_accumulation_steps",
                "loss_scale_factor",
            )
        )
    )
    if not plain or any(
        isinstance(v.value, tf.distribute.DistributedValues) for v in variables
    ):
        return None
    slots = []
    for variable in variables:
        found = {
            s.name.rsplit("_", 1)[-1]: s
            for s in optimizer_slots(optimizer, variable)
        }
        slots.append((variable, found["momentum"], found["velocity"]))
    return slots


def _fused_adam_step(optimizer, slots, grads):
    """Keras Adam's `apply` (t ← t + 1; m ← m + (g − m)(1 − β1);
    v ← v + (g² − v)(1 − β2); θ ← θ − lr·√(1 − β2ᵗ)/(1 − β1ᵗ)·m/(√v + ε))
    as one `ResourceApplyAdam` per variable, on Keras' own slots. For
    TorchAdam the kernel gets β-powers 0, lr/(1 − β1ᵗ)·√(1 − β2ᵗ) and
    ε·√(1 − β2ᵗ) (from its float64 powers), which is its update
    lr/(1 − β1ᵗ)·m/(√v/√(1 − β2ᵗ) + ε)."""
    lr = ops.cast(optimizer.learning_rate, "float32")
    epsilon = optimizer.epsilon
    if isinstance(optimizer, TorchAdam):
        beta1_power, beta2_power = optimizer.bias_powers()
        root = ops.sqrt(1 - beta2_power)
        lr = ops.cast(
            ops.cast(lr, "float64") * root / (1 - beta1_power), "float32"
        )
        epsilon = ops.cast(epsilon * root, "float32")
        beta1_power = beta2_power = ops.zeros((), "float32")
    else:
        step = ops.cast(optimizer.iterations + 1, "float32")
        beta1_power = ops.power(optimizer.beta_1, step)
        beta2_power = ops.power(optimizer.beta_2, step)
    for (variable, momentum, velocity), grad in zip(slots, grads):
        tf.raw_ops.ResourceApplyAdam(
            var=variable.value.handle,
            m=momentum.value.handle,
            v=velocity.value.handle,
            beta1_power=beta1_power,
            beta2_power=beta2_power,
            lr=lr,
            beta1=optimizer.beta_1,
            beta2=optimizer.beta_2,
            epsilon=epsilon,
            grad=grad,
        )
    optimizer.iterations.assign_add(1)


def _in_chunks(fn, *arrays):
    """fn over `_EVAL_BATCH`-sized slices of `arrays`, its output (a tensor
    or a tuple of them) concatenated along the examples, as numpy."""
    parts = [
        fn(*(a[i : i + _EVAL_BATCH] for a in arrays))
        for i in range(0, len(arrays[0]), _EVAL_BATCH)
    ]
    return tf.nest.map_structure(
        lambda *chunks: np.concatenate([np.asarray(c) for c in chunks]),
        *parts,
    )


class TransferLearner:
    """A Kaiming-normal head (zero bias) on `model`'s body, and its optimizer.

    Args:
      model: the pretrained classifier (its output layer named `classifier`).
      outputs: the new head's size.
      optimizer: an optimizer class; a fresh state is made for every run.
      linear_probe: train the head only (True) or the whole model.
    """

    def __init__(self, model, outputs, optimizer, *, linear_probe):
        body = models.feature_extractor(model)
        dim = body.output.shape[-1]
        self.linear_probe = linear_probe
        self.body = None if linear_probe else body
        self._pretrained = [v.numpy() for v in body.weights]
        self.head = keras.layers.Dense(outputs, name="classifier")
        self.head.build((None, dim))
        self.variables = list(self.head.trainable_variables)
        if not linear_probe:
            self.variables = body.trainable_variables + self.variables
        self.optimizer = optimizer(learning_rate=1e-3)
        self.optimizer.build(self.variables)
        self._adam_slots = _adam_slots(self.optimizer, self.variables)
        shape = [None, dim] if linear_probe else [None, *model.input.shape[1:]]
        x_spec = tf.TensorSpec(shape, tf.float32)
        y_spec = tf.TensorSpec([None], tf.int32)
        self._train_fn = tf.function(
            self._train,
            input_signature=[x_spec, y_spec, tf.TensorSpec([], tf.int32)],
        )
        self._logits = tf.function(self._forward, input_signature=[x_spec])
        self._embed = tf.function(
            lambda images: body(images, training=False),
            input_signature=[tf.TensorSpec(model.input.shape, tf.float32)],
        )
        self._scores = tf.function(
            self._score, input_signature=[x_spec, y_spec]
        )

    def inputs(self, images):
        """What `train` and `per_class` take: cached features or images."""
        if not self.linear_probe:
            return images
        return _in_chunks(self._embed, np.asarray(images, np.float32))

    def restore(self):
        """Puts the pretrained body weights back (full-model transfer
        changes them; linear probing never does)."""
        if not self.linear_probe:
            for variable, value in zip(self.body.weights, self._pretrained):
                variable.assign(value)

    def reset(self, learning_rate, seed):
        """Pretrained body, fresh head and fresh optimizer for a new run."""
        self.restore()
        zapping.zap(self.head, reset_bias=True, seed=seed)
        for variable in self.optimizer.variables:
            variable.assign(ops.zeros_like(variable))
        self.optimizer.learning_rate = learning_rate

    def train(self, x, y, batch_size):
        """Optimizer steps on consecutive batches of (x, y), in order."""
        self._train_fn(
            np.asarray(x, np.float32), np.asarray(y, np.int32), batch_size
        )

    def _forward(self, x):
        if self.body is not None:
            x = self.body(x, training=False)
        return self.head(x)

    def _train(self, x, y, batch_size):
        """One optimizer step per `batch_size` consecutive examples."""
        n = tf.shape(x)[0]
        for start in tf.range(0, n, batch_size):
            xb = x[start : start + batch_size]
            yb = y[start : start + batch_size]
            with tf.GradientTape() as tape:
                loss = ops.mean(
                    per_example_cross_entropy(yb, self._forward(xb))
                )
            grads = tape.gradient(loss, self.variables)
            if self._adam_slots:
                _fused_adam_step(self.optimizer, self._adam_slots, grads)
            else:
                self.optimizer.apply(grads, self.variables)

    def logits(self, x):
        """The head's logits on `inputs(images)`, as a numpy array."""
        return _in_chunks(self._logits, np.asarray(x, np.float32))

    def _score(self, x, y):
        """Per-example (top-1 correct, top-5 correct, cross-entropy): only
        [n] vectors leave the graph, not the [n, classes] logits. An image
        is top-5 correct when fewer than 5 logits exceed its label's (so
        always, with at most 5 outputs)."""
        logits = self._forward(x)
        predicted = tf.argmax(logits, -1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predicted, y), tf.float32)
        label_logit = tf.gather(logits, y, axis=1, batch_dims=1)[:, None]
        above = tf.reduce_sum(tf.cast(logits > label_logit, tf.int32), -1)
        top5 = tf.cast(above < 5, tf.float32)
        return correct, top5, per_example_cross_entropy(y, logits)

    def scores(self, x, labels, classes):
        """{'accuracy', 'top5_accuracy', 'loss'}: each class's mean in
        `classes`, in that order (macro: every class weighs the same)."""
        labels = np.asarray(labels, np.int32)
        correct, top5, losses = _in_chunks(self._scores, x, labels)
        size = int(max(classes.max(), labels.max())) + 1
        counts = np.maximum(np.bincount(labels, minlength=size), 1)[classes]
        return {
            name: np.bincount(labels, values, minlength=size)[classes] / counts
            for name, values in (
                ("accuracy", correct),
                ("top5_accuracy", top5),
                ("loss", losses),
            )
        }

    def per_class(self, x, labels, classes):
        """(accuracy, mean loss) of each class in `classes`, in that order."""
        found = self.scores(x, labels, classes)
        return found["accuracy"], found["loss"]

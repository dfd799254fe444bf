"""The learner every transfer protocol trains: a fresh head on a pretrained
body (frati2024 Alg. 2 and 3; reference-implementations.md §1.7, §1.8).

Linear probing freezes the body, so its features are computed once and the
head trains on them; full-model training updates body and head, and the
body's pretrained weights are restored before every run. The model stays in
inference mode throughout, as in the reference (frozen BatchNorm statistics).
Training takes whole slices of a trajectory and runs them as one compiled
loop of optimizer steps, traced once for all runs and learning rates.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zapkeras import models
from zapkeras.methods import zapping

_EVAL_BATCH = 512


def _cross_entropy(y, logits):
    """Per-example CE, not pre-divided by replicas (unlike a Loss object)."""
    return keras.losses.sparse_categorical_crossentropy(
        y, logits, from_logits=True
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
        self._features = body
        self._pretrained = [v.numpy() for v in body.weights]
        self.head = keras.layers.Dense(outputs, name="classifier")
        self.head.build((None, dim))
        self.variables = list(self.head.trainable_variables)
        if not linear_probe:
            self.variables = body.trainable_variables + self.variables
        self.optimizer = optimizer(learning_rate=1e-3)
        self.optimizer.build(self.variables)
        shape = [None, dim] if linear_probe else [None, *model.input.shape[1:]]
        x_spec = tf.TensorSpec(shape, tf.float32)
        y_spec = tf.TensorSpec([None], tf.int32)
        self._train_fn = tf.function(
            self._train,
            input_signature=[x_spec, y_spec, tf.TensorSpec([], tf.int32)],
        )
        self._logits = tf.function(self._forward, input_signature=[x_spec])

    def inputs(self, images):
        """What `train` and `predict` take: cached features or images."""
        if self.linear_probe:
            return self._features.predict(images, _EVAL_BATCH, verbose=0)
        return images

    def reset(self, learning_rate, seed):
        """Pretrained body, fresh head and fresh optimizer for a new run."""
        if not self.linear_probe:
            for variable, value in zip(self.body.weights, self._pretrained):
                variable.assign(value)
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
                loss = ops.mean(_cross_entropy(yb, self._forward(xb)))
            grads = tape.gradient(loss, self.variables)
            self.optimizer.apply(grads, self.variables)

    def logits(self, x):
        return np.concatenate(
            [
                self._logits(x[i : i + _EVAL_BATCH]).numpy()
                for i in range(0, len(x), _EVAL_BATCH)
            ]
        )

    def per_class(self, x, labels, classes):
        """(accuracy, mean loss) of each class in `classes`, in that order."""
        logits = self.logits(x)
        correct = (logits.argmax(-1) == labels).astype(float)
        losses = np.asarray(_cross_entropy(labels, logits))
        size = int(max(classes.max(), labels.max())) + 1
        counts = np.maximum(np.bincount(labels, minlength=size), 1)[classes]
        accuracy = np.bincount(labels, correct, minlength=size)[classes]
        loss = np.bincount(labels, losses, minlength=size)[classes]
        return accuracy / counts, loss / counts

"""Sequential (continual) transfer by linear probing (frati2024 Alg. 2).

A fresh head (Kaiming-normal weights, zero bias: reference-implementations.md
§1.7) learns the transfer classes one after another, one example per
optimizer step, each example once, with the pretrained body frozen. Because
the body is frozen its features are computed once; every run of every
learning rate then trains the head on those cached features inside a
compiled loop. The head is evaluated after the first class, every
`eval_every` classes and at the end, per class, on the support (train) and
held-out query (test) images of the classes seen and of all classes of the
trajectory. Each learning rate is repeated `runs` times with a new class order
and head; the best learning rate (mean final test accuracy) is reported.
"""

import os

import gin
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zapkeras import data as data_lib
from zapkeras import models
from zapkeras.errors import UsageError
from zapkeras.methods import zapping
from zapkeras.outputs import console
from zapkeras.outputs import files


class _LinearProbe:
    """A Dense head and its optimizer, trained one example per step."""

    def __init__(self, dim, outputs, optimizer):
        self.head = keras.layers.Dense(outputs, name="classifier")
        self.head.build((None, dim))
        self.optimizer = optimizer(learning_rate=1e-3)
        self.optimizer.build(self.head.trainable_variables)
        self.train = tf.function(
            self._train,
            input_signature=[
                tf.TensorSpec([None, dim], tf.float32),
                tf.TensorSpec([None], tf.int32),
            ],
        )

    def reset(self, learning_rate, seed):
        """A fresh Kaiming-normal head with zero bias and a fresh optimizer."""
        zapping.zap(self.head, reset_bias=True, seed=seed)
        for variable in self.optimizer.variables:
            variable.assign(ops.zeros_like(variable))
        self.optimizer.learning_rate = learning_rate

    def _train(self, x, y):
        weights = self.head.trainable_variables
        for t in tf.range(tf.shape(x)[0]):
            with tf.GradientTape() as tape:
                logits = self.head(x[t : t + 1])
                loss = ops.mean(
                    keras.losses.sparse_categorical_crossentropy(
                        y[t : t + 1], logits, from_logits=True
                    )
                )
            self.optimizer.apply(tape.gradient(loss, weights), weights)

    def predict(self, x):
        return np.asarray(ops.argmax(self.head(x), axis=-1))


def _per_class_accuracy(predictions, labels, classes):
    """Accuracy of each class in `classes` (macro), in that order."""
    correct = np.bincount(
        labels, weights=(predictions == labels).astype(float), minlength=classes.max() + 1
    )
    counts = np.bincount(labels, minlength=classes.max() + 1)
    return correct[classes] / np.maximum(counts[classes], 1)


def _eval_points(num_classes, eval_every):
    """Class counts after which the head is evaluated (1-based)."""
    points = {1, num_classes}
    points.update(range(eval_every, num_classes + 1, eval_every))
    return sorted(points)


def _one_run(probe, support, query, order, eval_every):
    """Trains `probe` along the class trajectory `order`; returns its curve."""
    x, y = data_lib.sequential_stream(support, order)
    per_class = np.bincount(support.labels)[order]
    ends = np.cumsum(per_class)
    in_traj = np.isin(support.labels, order)
    q_in_traj = np.isin(query.labels, order)
    curve = []
    done = 0
    for seen in _eval_points(len(order), eval_every):
        probe.train(x[done : ends[seen - 1]], y[done : ends[seen - 1]])
        done = ends[seen - 1]
        train_acc = _per_class_accuracy(
            probe.predict(support.images[in_traj]),
            support.labels[in_traj],
            order,
        )
        test_acc = _per_class_accuracy(
            probe.predict(query.images[q_in_traj]),
            query.labels[q_in_traj],
            order,
        )
        curve.append(
            {
                "classes_seen": int(seen),
                "train_accuracy_seen": float(train_acc[:seen].mean()),
                "test_accuracy_seen": float(test_acc[:seen].mean()),
                "train_accuracy_all": float(train_acc.mean()),
                "test_accuracy_all": float(test_acc.mean()),
            }
        )
    return {
        "class_order": [int(c) for c in order],
        "curve": curve,
        "per_class_test_accuracy": [float(a) for a in test_acc],
        "per_class_train_accuracy": [float(a) for a in train_acc],
    }


def _summarise(runs_by_lr):
    by_lr = {}
    for lr, runs in runs_by_lr.items():
        test = [r["curve"][-1]["test_accuracy_all"] for r in runs]
        train = [r["curve"][-1]["train_accuracy_all"] for r in runs]
        by_lr[lr] = {
            "test_accuracy": float(np.mean(test)),
            "test_accuracy_std": float(np.std(test)),
            "train_accuracy": float(np.mean(train)),
            "train_accuracy_std": float(np.std(train)),
        }
    best = max(by_lr, key=lambda lr: by_lr[lr]["test_accuracy"])
    return {
        "test_accuracy": by_lr[best]["test_accuracy"],
        "test_accuracy_std": by_lr[best]["test_accuracy_std"],
        "train_accuracy": by_lr[best]["train_accuracy"],
        "best_lr": float(best),
        "by_lr": by_lr,
    }


def _log_curves(writer, runs_by_lr, best_lr):
    for lr, runs in runs_by_lr.items():
        tags = [f"transfer/sequential/lr_{lr}"]
        if float(lr) == best_lr:
            tags.append("transfer/sequential/best_lr")
        for i, point in enumerate(runs[0]["curve"]):
            mean = {
                k: np.mean([r["curve"][i][k] for r in runs])
                for k in point
                if k != "classes_seen"
            }
            for tag in tags:
                writer.scalars(tag, mean, point["classes_seen"])


@gin.configurable(denylist=["model", "pool", "context"])
def sequential_transfer(
    model,
    pool,
    context,
    *,
    learning_rates=(1e-3,),
    runs=10,
    classes=600,
    train_per_class=15,
    eval_every=50,
    optimizer=keras.optimizers.Adam,
):
    """Runs the frati2024 sequential-transfer protocol; returns a results dict.

    Args:
      model: the pretrained classifier; its body is frozen (linear probing).
      pool: `LabeledImages` of the transfer classes (disjoint from
        pretraining); each run samples `classes` of them without replacement.
      context: the `RunContext` of the run.
      learning_rates: the sweep (TRANSFER_LRS); the best is reported.
      runs: repeats per learning rate (TRANSFER_RUNS), each with a new class
        order and a new head; orders and heads are shared across rates.
      classes: trajectory length (TRANSFER_CLASSES).
      train_per_class: support images per class; the rest are held out.
      eval_every: evaluation cadence in classes (reference: 50 on Omniglot).
      optimizer: a fresh instance per run (reference: Adam).
    """
    if not learning_rates or min(learning_rates) <= 0:
        raise UsageError(
            f"TRANSFER_LRS = {learning_rates!r}; give one or more positive "
            "learning rates, e.g. (1e-3, 4e-4)."
        )
    if runs < 1 or eval_every < 1:
        raise UsageError(
            "sequential_transfer.runs (TRANSFER_RUNS) and .eval_every must be "
            "at least 1."
        )
    if not 1 <= classes <= pool.num_classes:
        raise UsageError(
            f"TRANSFER_CLASSES = {classes} but the transfer set has "
            f"{pool.num_classes} classes; choose 1..{pool.num_classes}."
        )
    support, query = data_lib.split_per_class(
        pool, train_per_class, seed=context.seed
    )
    body = models.feature_extractor(model)
    support = _with_images(support, body.predict(support.images, verbose=0))
    query = _with_images(query, body.predict(query.images, verbose=0))
    outputs = max(model.get_layer("classifier").units, pool.num_classes)
    probe = _LinearProbe(support.images.shape[-1], outputs, optimizer)
    progress_path = os.path.join(
        context.checkpoint_dir("transfer"), "sequential.json"
    )
    progress = files.read_json(progress_path, {})
    for lr in learning_rates:
        for run in range(runs):
            key = f"{lr:g}/{run}"
            if key in progress:
                continue
            rng = np.random.default_rng([context.seed, run])
            order = rng.choice(pool.num_classes, classes, replace=False)
            probe.reset(lr, seed=int(rng.integers(2**31)))
            progress[key] = _one_run(probe, support, query, order, eval_every)
            files.write_json(progress_path, progress)
            console.say(
                f"transfer[{context.label}] lr {lr:g} run {run + 1}/{runs}  "
                "test acc "
                f"{progress[key]['curve'][-1]['test_accuracy_all']:.4f}"
            )
    runs_by_lr = {
        f"{lr:g}": [progress[f"{lr:g}/{r}"] for r in range(runs)]
        for lr in learning_rates
    }
    summary = _summarise(runs_by_lr)
    _log_curves(context.writer, runs_by_lr, summary["best_lr"])
    files.write_json(
        context.curves_path("transfer_sequential.json"),
        runs_by_lr,
    )
    return summary


def _with_images(images, new_images):
    return data_lib.LabeledImages(
        images=np.asarray(new_images),
        labels=images.labels,
        class_names=images.class_names,
    )

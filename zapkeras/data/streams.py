"""Seeded ways to present LabeledImages to a learner.

Per-class train/test splits, i.i.d. minibatch epochs, the class-by-class
trajectory of sequential transfer (frati2024 Alg. 2) and ASB / Meta-ASB
episodes. Every random choice is a stateless function of (seed, epoch) or
(seed, episode), so a run resumed at epoch or episode e sees exactly what
an uninterrupted run would have seen.
"""

import numpy as np
import tensorflow as tf

from zapkeras import settings
from zapkeras.errors import UsageError

_ALG = "philox"  # fixed, so streams do not depend on the device
_TRAIN_PER_CLASS = "train_per_class (TransferRunner.train_per_class)"
_TrainPerClass = settings.PositiveInt(
    note="frati2024 trains on 15 images per class."
)


def steady(dataset):
    """`dataset` without tf.data's autotuner (the maps and prefetch keep a
    fixed parallelism). On this 2-core CPU the autotuner's background work
    took a core from the training step in about half of the fits (i.i.d.
    pretraining 125 instead of 210 images/s; issue 7)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


@settings.declared("TransferRunner")
def split_per_class(data, train_per_class: _TrainPerClass = 15, seed=0):
    """(train, test): per class, a seeded shuffle of its images; the first
    `train_per_class` go to train, the rest to test (frati2024: 15/5).
    `seed` is an int or a tuple of ints (e.g. (seed, run) for a new split
    per transfer run)."""
    counts = np.bincount(data.labels, minlength=data.num_classes)
    if counts.min() <= train_per_class:
        worst = np.argmin(counts)
        raise UsageError(
            f"{_TRAIN_PER_CLASS} = {train_per_class}, "
            f"but class '{data.class_names[worst]}' has {counts[worst]} "
            "images; every class needs at least one test image. Lower "
            "train_per_class or use classes with more images."
        )
    train, test = [], []
    for c, members in enumerate(_members(data.labels, counts)):
        # One generator per class: a class's split ignores the others.
        rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), c])
        members = rng.permutation(members)
        train.append(members[:train_per_class])
        test.append(members[train_per_class:])
    return data.take(np.concatenate(train)), data.take(np.concatenate(test))


@settings.declared("steps_per_epoch")
def steps_per_epoch(n, batch_size: settings.PositiveInt(example=32)):
    """Batches in one epoch of `n` examples, the last one partial."""
    if n < 1:
        raise UsageError(
            f"batch_size = {batch_size} with {n} examples: the data must not "
            "be empty."
        )
    return -(-n // batch_size)


def iid_batches(data, batch_size, seed, *, start_epoch=0):
    """Infinite (x, y) batches, epoch after epoch from `start_epoch`.

    Epoch e is the permutation given by the stateless key (seed, e), cut
    into `steps_per_epoch` batches.
    """
    n = len(data.labels)
    steps_per_epoch(n, batch_size)
    images = tf.constant(data.images)
    labels = tf.constant(data.labels)

    def epoch(e):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), _key(seed, e), alg=_ALG
        )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    return steady(
        tf.data.Dataset.counter(start_epoch)
        .flat_map(epoch)
        .map(
            lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def sequential_stream(data, class_order):
    """(x [T, ...], y [T]): class after class in `class_order`, each class's
    examples once, in stored order (frati2024 Alg. 2 trajectory)."""
    try:
        order = np.asarray(class_order, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        order = None
    if (
        order is None
        or not len(order)
        or len(np.unique(order)) != len(order)
        or not np.all((order >= 0) & (order < data.num_classes))
    ):
        shown = class_order if order is None else order.tolist()
        raise UsageError(
            f"class_order {shown!r} must list distinct class ids in "
            f"0..{data.num_classes - 1} (at least one)."
        )
    members = _members(
        data.labels, np.bincount(data.labels, minlength=data.num_classes)
    )
    idx = np.concatenate([members[c] for c in order])
    return data.images[idx], data.labels[idx]


@settings.declared("asb_episodes")
def asb_episodes(
    data,
    *,
    inner_steps: settings.PositiveInt = 20,
    remember: settings.NonNegativeInt = 64,
    seed=0,
    start_episode=0,
):
    """Infinite ASB / Meta-ASB episodes from `start_episode`.

    Episode i depends only on (seed, i): a class c drawn uniformly;
    `inner_steps` of c's images, drawn with replacement only when c has
    fewer images than that; `remember` images drawn without replacement
    from all classes. Elements are dicts of inner_x [K, H, W, C], inner_y
    [K], remember_x [R, H, W, C], remember_y [R].
    """
    n = len(data.labels)
    counts = np.bincount(data.labels, minlength=data.num_classes)
    if remember > n:
        raise UsageError(
            f"asb_episodes.remember = {remember} but the data has {n} "
            f"images to draw from without replacement; use 0..{n}."
        )
    if not np.all(counts):
        raise UsageError(
            f"asb_episodes: class '{data.class_names[np.argmin(counts)]}' "
            "has no images; drop empty classes (subset_classes) first."
        )
    images = tf.constant(data.images)
    labels = tf.constant(data.labels)
    by_class = tf.constant(np.argsort(data.labels, kind="stable"))
    sizes = tf.constant(counts, tf.int64)
    starts = tf.constant(np.cumsum(counts) - counts, tf.int64)

    def episode(i):
        class_key, inner_key, remember_key = tf.unstack(
            tf.random.experimental.stateless_split(_key(seed, i), 3, alg=_ALG)
        )
        c = tf.random.stateless_uniform(
            [], class_key, 0, data.num_classes, tf.int64, alg=_ALG
        )
        size = sizes[c]
        draws = tf.cond(
            inner_steps > size,
            lambda: tf.random.stateless_uniform(
                [inner_steps], inner_key, 0, size, tf.int64, alg=_ALG
            ),
            lambda: tf.random.experimental.stateless_shuffle(
                tf.range(size), inner_key, alg=_ALG
            )[:inner_steps],
        )
        inner = tf.gather(
            by_class, starts[c] + tf.ensure_shape(draws, [inner_steps])
        )
        kept = tf.random.experimental.stateless_shuffle(
            tf.range(n), remember_key, alg=_ALG
        )[:remember]
        return {
            "inner_x": tf.gather(images, inner),
            "inner_y": tf.gather(labels, inner),
            "remember_x": tf.gather(images, kept),
            "remember_y": tf.gather(labels, kept),
        }

    return steady(
        tf.data.Dataset.counter(start_episode)
        .map(episode, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _key(seed, step):
    """The stateless RNG key of one epoch or episode."""
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])


def _members(labels, counts):
    """Per class, the indices of its examples in stored order."""
    by_class = np.argsort(labels, kind="stable")
    return np.split(by_class, np.cumsum(counts)[:-1])

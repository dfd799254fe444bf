"""Continual-learning problems: seeded task streams over any local dataset.

- `permuted_tasks`: a fixed random pixel permutation per task, one epoch
  per task (hernandez-garcia2025 §3; docs/reference_codes.md §2.3).
- `class_incremental_tasks`: classes in a seeded order, `classes_first`
  then `classes_per_task` new ones per task, logits limited to the classes
  seen (hernandez-garcia2025 §5, after Dohare et al. 2024).
- warm-start and multi-stage phases: zapkeras.data.warm_start.

A problem with `smooth_shift` = γ (the warm-start problems offer it)
shifts smoothly instead of abruptly: within task t > 0 each example comes
from task t's data with probability p = 1 − γ^(50 n / N) and from task
t − 1's otherwise (berariu2021 §2 Fig. 3, App. A.2: n the step within the
task, N its steps), drawn with replacement.

Every random choice is a function of (seed, task[, epoch or step]), so a
run resumed at any epoch sees the data an uninterrupted run would have.
"""

import numpy as np
import tensorflow as tf

import gin
from zapkeras import settings
from zapkeras import validate
from zapkeras.data import streams
from zapkeras.data.continual_sources import continual_dataset
from zapkeras.data.types import LabeledImages
from zapkeras.data.types import Phase
from zapkeras.errors import UsageError

__all__ = [
    "Phase",
    "Problem",
    "class_incremental_tasks",
    "continual_dataset",
    "permuted_tasks",
]

_ALG = "philox"
# Random streams: task_rng(seed, stream, index) (warm_start.py uses 5, 6).
_PERMUTATION, _SHUFFLE, _PROBE, _ORDER, _HOLDOUT = range(5)


def task_rng(seed, stream, *index):
    """The numpy generator of random stream `stream` of a task or class."""
    return np.random.default_rng([seed, stream, *index])


def _key(seed, step):
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])


class Problem:
    """A sequence of tasks over one dataset's train and test images.

    Subclasses set `name`, `phases` (one Phase per task), `seen` (classes
    the logits may use, per task) and the test sets. Batches of task t are
    (x, y) with x float32 [B, H, W, C]; an epoch is a seeded permutation.
    """

    name = "problem"
    has_task_tests = True  # tasks have their own test sets (a[i][j])
    evaluates_future = False  # a[i][j] for j > i is meaningful (FWT)
    fresh_baseline = False  # compare with a fresh model on the last task

    def __init__(self, train, test, seed, phases, seen):
        self.train, self.test, self.seed = train, test, seed
        self.phases, self.seen = phases, seen
        self.num_classes = train.num_classes
        self.input_shape = train.images.shape[1:]
        self._images = None
        self.smooth_shift = None

    @property
    def num_tasks(self):
        return len(self.phases)

    def steps_per_epoch(self, task, batch_size):
        return -(-len(self.phases[task].index) // batch_size)

    def batches(self, task, batch_size, start_epoch=0):
        """Infinite (x, y) batches of `task` from epoch `start_epoch`."""
        phase = self.phases[task]
        seed = int(task_rng(self.seed, _SHUFFLE, task).integers(2**31))
        if self.smooth_shift is not None and task > 0:
            return self._shifting(task, batch_size, seed, start_epoch)
        n = len(phase.index)
        images = self._train_images()
        index = tf.constant(phase.index, tf.int64)
        labels = tf.constant(phase.labels, tf.int32)

        def epoch(e):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), _key(seed, e), alg=_ALG
            )
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        def gather(order):
            x = tf.gather(images, tf.gather(index, order))
            return self.transform(task, x), tf.gather(labels, order)

        return streams.steady(
            tf.data.Dataset.counter(start_epoch)
            .flat_map(epoch)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

    def _shifting(self, task, batch_size, seed, start_epoch):
        """berariu2021 A.2: example-wise mixing of the previous phase's
        data into this one's, with replacement (an epoch is not a
        permutation)."""
        new, old = self.phases[task], self.phases[task - 1]
        steps = self.steps_per_epoch(task, batch_size)
        total = steps * new.epochs
        gamma = self.smooth_shift
        images = self._train_images()
        pools = [
            (tf.constant(p.index, tf.int64), tf.constant(p.labels, tf.int32))
            for p in (old, new)
        ]

        def batch(step):
            mix_key, *keys = tf.unstack(
                tf.random.experimental.stateless_split(
                    _key(seed, step), 3, alg=_ALG
                )
            )
            p = 1.0 - gamma ** (50.0 * tf.cast(step, tf.float64) / total)
            pick_new = tf.random.stateless_uniform(
                [batch_size], mix_key, alg=_ALG
            ) < tf.cast(p, tf.float32)
            picks = []
            for key, (index, labels) in zip(keys, pools):
                i = tf.random.stateless_uniform(
                    [batch_size],
                    key,
                    0,
                    tf.size(index, tf.int64),
                    tf.int64,
                    alg=_ALG,
                )
                picks.append((tf.gather(index, i), tf.gather(labels, i)))
            idx = tf.where(pick_new, picks[1][0], picks[0][0])
            y = tf.where(pick_new, picks[1][1], picks[0][1])
            x = tf.gather(images, idx)
            return self.transform(task, x), y

        return streams.steady(
            tf.data.Dataset.counter(start_epoch * steps)
            .map(batch, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

    def _train_images(self):
        if self._images is None:
            self._images = tf.constant(self.train.images)
        return self._images

    def transform(self, task, x):
        """Per-task input transform of a batch (identity by default)."""
        del task
        return x

    def probe(self, task, size):
        """A fixed sample (x, y) of `task`'s training examples."""
        phase = self.phases[task]
        n = min(size, len(phase.index))
        pick = task_rng(self.seed, _PROBE, task).choice(
            len(phase.index), n, replace=False
        )
        x = tf.constant(self.train.images[phase.index[pick]])
        return np.asarray(self.transform(task, x)), phase.labels[pick]

    def task_test(self, task):
        """(x, y): the test set whose accuracy is `test_accuracy` of task."""
        raise NotImplementedError

    def matrix_test(self, task):
        """(x, y): test images of task `task` alone (accuracy matrix)."""
        raise NotImplementedError

    def validation(self, task):
        """(x, y) held out from training for best-model selection, or None."""
        del task
        return None

    def describe(self):
        return {"problem": self.name, "tasks": self.num_tasks}


class PermutedProblem(Problem):
    """Task t permutes the pixel positions (channels kept together) with a
    permutation drawn from (seed, t); task 0 is permuted too, as in the
    reference code."""

    name = "permuted"
    evaluates_future = True

    def __init__(self, train, test, seed, tasks, epochs):
        index = np.arange(len(train.labels))
        phases = [Phase(index, train.labels, epochs)] * tasks
        super().__init__(train, test, seed, phases, [train.num_classes] * tasks)
        height, width, _ = self.input_shape
        self.pixels = height * width

    def permutation(self, task):
        return task_rng(self.seed, _PERMUTATION, task).permutation(self.pixels)

    def transform(self, task, x):
        shape = tf.shape(x)
        flat = tf.reshape(x, [shape[0], self.pixels, shape[-1]])
        permuted = tf.gather(flat, self.permutation(task), axis=1)
        return tf.reshape(permuted, shape)

    def task_test(self, task):
        return self.matrix_test(task)

    def matrix_test(self, task):
        x = self.test.images
        flat = x.reshape(len(x), self.pixels, -1)[:, self.permutation(task)]
        return flat.reshape(x.shape), self.test.labels


class ClassIncrementalProblem(Problem):
    """Classes relabelled by a seeded order, so the classes seen after task
    t are labels 0..seen[t]-1."""

    name = "class_incremental"

    def __init__(self, train, val, test, seed, seen, epochs, accumulate):
        low = [0] + seen[:-1]
        phases = []
        for lo, hi in zip(low, seen):
            keep = (train.labels >= (0 if accumulate else lo)) & (
                train.labels < hi
            )
            index = np.flatnonzero(keep)
            phases.append(Phase(index, train.labels[index], epochs))
        super().__init__(train, test, seed, phases, seen)
        self.val, self.low = val, low

    def _classes(self, data, lo, hi):
        if data is None:
            return None
        keep = (data.labels >= lo) & (data.labels < hi)
        return data.images[keep], data.labels[keep]

    def task_test(self, task):
        return self._classes(self.test, 0, self.seen[task])

    def matrix_test(self, task):
        return self._classes(self.test, self.low[task], self.seen[task])

    def validation(self, task):
        return self._classes(self.val, 0, self.seen[task])

    def describe(self):
        return {**super().describe(), "classes_seen": list(self.seen)}


def check_seed(seed):
    """The run seed every problem's random streams start from."""
    return validate.non_negative_int(seed, "--seed")


@gin.configurable(denylist=["train", "test", "seed"])
@settings.declared("permuted_tasks")
def permuted_tasks(
    train,
    test,
    seed,
    *,
    tasks: settings.PositiveInt = 1000,
    epochs_per_task: settings.PositiveInt = 1,
):
    """Permuted inputs (reference: MNIST, 1000 tasks, one epoch each)."""
    seed = check_seed(seed)
    return PermutedProblem(train, test, seed, tasks, epochs_per_task)


_ValidationFraction = settings.Fraction(
    high_open=True,
    note="The per-class share held out for validation (0: none).",
)


@gin.configurable(denylist=["train", "test", "seed"])
@settings.declared("class_incremental_tasks")
def class_incremental_tasks(
    train,
    test,
    seed,
    *,
    tasks: settings.PositiveInt = 20,
    epochs_per_task: settings.PositiveInt = 100,
    classes_first: settings.PositiveInt = 5,
    classes_per_task: settings.PositiveInt = 5,
    accumulate: settings.Bool = True,
    validation_fraction: _ValidationFraction = 0.1,
):
    """Class-incremental tasks (reference: CIFAR-100, 5 + 5 per task).

    `accumulate=True` trains task t on every class seen so far (the
    incremental CIFAR-100 of Dohare et al. / hernandez-garcia2025 §5);
    False on the new classes only. `validation_fraction` of each class's
    training images is held out (reference: 50 of 500) for best-model
    selection.
    """
    seed = check_seed(seed)
    needed = classes_first + (tasks - 1) * classes_per_task
    if needed > train.num_classes:
        raise UsageError(
            f"class_incremental_tasks: classes_first = {classes_first}, "
            f"classes_per_task = {classes_per_task} and TASKS = {tasks} need "
            f"{needed} classes but the dataset has {train.num_classes}; use "
            "classes_first + (TASKS - 1) * classes_per_task at most the "
            "number of classes."
        )
    order = task_rng(seed, _ORDER).permutation(train.num_classes)
    train, test = (_relabel(d, order) for d in (train, test))
    val = None
    if validation_fraction:
        val, train = _holdout(train, validation_fraction, seed)
    seen = [classes_first + t * classes_per_task for t in range(tasks)]
    return ClassIncrementalProblem(
        train, val, test, seed, seen, epochs_per_task, accumulate
    )


def _relabel(data, order):
    """Class order[k] becomes label k; images are shared, not copied."""
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return LabeledImages(
        images=data.images,
        labels=rank[data.labels].astype(np.int32),
        class_names=tuple(data.class_names[c] for c in order),
    )


def _holdout(data, fraction, seed):
    """(held out, rest): per class round(fraction · count) examples."""
    out = np.zeros(len(data.labels), bool)
    for c in range(data.num_classes):
        members = np.flatnonzero(data.labels == c)
        k = int(round(fraction * len(members)))
        out[task_rng(seed, _HOLDOUT, c).choice(members, k, replace=False)] = (
            True
        )
    return data.take(out), data.take(~out)

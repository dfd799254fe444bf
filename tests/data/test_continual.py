"""Continual problems (permuted, class-incremental): permutations fixed per
task, different across tasks and seeded; epochs are seeded permutations
that resume exactly; class order, seen counts and test sets exact."""

import numpy as np
import pytest

from zapkeras.data import continual
from zapkeras.data.types import LabeledImages
from zapkeras.errors import UsageError


def _coded(n=12, classes=3, size=4, channels=2):
    """Pixel (h, w, c) of image i holds 1000·i + 10·(h·size + w) + c."""
    pixel = np.arange(size * size).reshape(size, size, 1) * 10
    channel = np.arange(channels).reshape(1, 1, channels)
    images = np.stack([1000 * i + pixel + channel for i in range(n)])
    return LabeledImages(
        images=images.astype(np.float32),
        labels=(np.arange(n) % classes).astype(np.int32),
        class_names=tuple(f"c{k}" for k in range(classes)),
    )


def _epoch(problem, task, batch_size, start_epoch=0, epochs=1):
    steps = problem.steps_per_epoch(task, batch_size) * epochs
    batches = list(problem.batches(task, batch_size, start_epoch).take(steps))
    return (
        np.concatenate([x.numpy() for x, _ in batches]),
        np.concatenate([y.numpy() for _, y in batches]),
    )


def _pixel_order(images, size=4):
    """The source pixel of every position (channel 0), per image."""
    flat = images[..., 0].reshape(len(images), size * size)
    return ((flat % 1000) // 10).astype(int)


def test_permutation_fixed_within_a_task_and_new_per_task():
    data = _coded()
    problem = continual.permuted_tasks(data, data, seed=3, tasks=3)
    orders = []
    for task in range(3):
        x, _ = _epoch(problem, task, 5, epochs=2)
        order = _pixel_order(x)
        assert (order == order[0]).all()  # every batch, both epochs
        assert sorted(order[0]) == list(range(16))
        np.testing.assert_array_equal(order[0], problem.permutation(task))
        # channels move together with their pixel
        np.testing.assert_array_equal(x[..., 1] - x[..., 0], 1.0)
        test_x, test_y = problem.task_test(task)
        np.testing.assert_array_equal(_pixel_order(test_x)[0], order[0])
        np.testing.assert_array_equal(test_y, data.labels)
        orders.append(tuple(order[0]))
    assert len(set(orders)) == 3
    assert orders[0] != tuple(range(16))  # task 0 is permuted too


def test_permutations_are_seeded():
    data = _coded()
    a, b, c = (
        continual.permuted_tasks(data, data, seed=s, tasks=2) for s in (1, 1, 2)
    )
    for task in range(2):
        np.testing.assert_array_equal(a.permutation(task), b.permutation(task))
    assert tuple(a.permutation(0)) != tuple(c.permutation(0))


def test_epochs_are_seeded_permutations_that_resume_exactly():
    data = _coded(n=13)
    problem = continual.permuted_tasks(data, data, seed=0, tasks=2)
    x, y = _epoch(problem, 0, 4, epochs=2)
    first, second = x[:13], x[13:]
    ids = lambda images: (images[:, 0, 0, 0] // 1000).astype(int)  # noqa
    assert sorted(ids(first)) == list(range(13))
    assert sorted(ids(second)) == list(range(13))
    assert list(ids(first)) != list(ids(second))
    resumed, resumed_y = _epoch(problem, 0, 4, start_epoch=1)
    np.testing.assert_array_equal(resumed, second)
    np.testing.assert_array_equal(resumed_y, y[13:])
    np.testing.assert_array_equal(y[:13], data.labels[ids(first)])
    # another task shuffles differently
    other, _ = _epoch(problem, 1, 4)
    assert list(ids(other)) != list(ids(first))


def test_probe_is_fixed_and_transformed():
    data = _coded()
    problem = continual.permuted_tasks(data, data, seed=0, tasks=2)
    x, y = problem.probe(1, 5)
    again, _ = problem.probe(1, 5)
    np.testing.assert_array_equal(x, again)
    assert len(x) == 5 and len(set((x[:, 0, 0, 0] // 1000).astype(int))) == 5
    np.testing.assert_array_equal(_pixel_order(x)[0], problem.permutation(1))
    np.testing.assert_array_equal(
        y, data.labels[(x[:, 0, 0, 0] // 1000).astype(int)]
    )


def _classes(classes=6, per_class=10):
    n = classes * per_class
    return LabeledImages(
        images=np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1),
        labels=np.repeat(np.arange(classes), per_class).astype(np.int32),
        class_names=tuple(f"c{k}" for k in range(classes)),
    )


def test_class_incremental_order_seen_and_test_sets():
    train, test = _classes(), _classes(per_class=4)
    problem = continual.class_incremental_tasks(
        train,
        test,
        seed=5,
        tasks=3,
        classes_first=2,
        classes_per_task=2,
        validation_fraction=0.2,
    )
    assert problem.seen == [2, 4, 6]
    order = [int(name[1:]) for name in problem.train.class_names]
    assert sorted(order) == list(range(6)) and order != list(range(6))
    again = continual.class_incremental_tasks(
        train, test, seed=5, tasks=3, classes_first=2, classes_per_task=2
    )
    assert again.train.class_names == problem.train.class_names
    # relabelling: image of original class order[k] now has label k
    original = lambda images: (images.ravel() // 10).astype(int)  # noqa
    for t in range(3):
        phase = problem.phases[t]
        x = problem.train.images[phase.index]
        np.testing.assert_array_equal(
            np.asarray(order)[phase.labels], original(x)
        )
        assert set(phase.labels) == set(range(problem.seen[t]))  # accumulate
        test_x, test_y = problem.task_test(t)
        assert set(test_y) == set(range(problem.seen[t]))
        assert len(test_y) == 4 * problem.seen[t]
        m_x, m_y = problem.matrix_test(t)
        assert set(m_y) == {2 * t, 2 * t + 1}
        val_x, val_y = problem.validation(t)
        assert set(val_y) == set(range(problem.seen[t]))
        assert np.bincount(val_y).tolist() == [2] * problem.seen[t]
        assert not set(val_x.ravel()) & set(problem.train.images.ravel())
    assert len(problem.train.labels) == 6 * 8  # 2 of 10 held out per class


def test_class_incremental_new_classes_only():
    problem = continual.class_incremental_tasks(
        _classes(),
        _classes(),
        seed=0,
        tasks=3,
        classes_first=2,
        classes_per_task=2,
        accumulate=False,
        validation_fraction=0.0,
    )
    assert problem.validation(0) is None
    for t in range(3):
        assert set(problem.phases[t].labels) == {2 * t, 2 * t + 1}


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"tasks": 4, "classes_first": 2, "classes_per_task": 2}, "classes"),
        ({"tasks": 0}, "class_incremental_tasks.tasks"),
        ({"tasks": 2, "epochs_per_task": 0}, "epochs_per_task"),
        ({"tasks": 2, "validation_fraction": 1.0}, "validation_fraction"),
    ],
)
def test_class_incremental_bad_settings(kwargs, setting):
    kwargs = {"classes_first": 2, "classes_per_task": 2, **kwargs}
    with pytest.raises(UsageError, match=setting):
        continual.class_incremental_tasks(
            _classes(), _classes(), seed=0, **kwargs
        )

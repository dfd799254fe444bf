"""Warm-start problems (lee2024, berariu2021): accumulated subset sizes,
exact label-noise counts with truly changed labels redrawn per phase, a
clean final phase, the reference's default schedules, multi-stage splits
and the smooth shift's mixing probability."""

import numpy as np
import pytest

from zapkeras.data import warm_start
from zapkeras.data.types import LabeledImages
from zapkeras.errors import UsageError


def _data(n=200, classes=5):
    return LabeledImages(
        images=np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1),
        labels=(np.arange(n) % classes).astype(np.int32),
        class_names=tuple(f"c{k}" for k in range(classes)),
    )


def test_two_phase_defaults_match_the_reference():
    data = _data()
    problem = warm_start.warm_start_tasks(
        data, data, seed=0, tasks=2, epochs_per_task=100
    )
    info = problem.describe()
    assert info["data_ratios"] == [0.1, 0.9]
    assert info["label_noise_ratios"] == [0.5, 0.0]
    assert info["epochs_per_phase"] == [1000, 111]
    assert info["examples_per_phase"] == [20, 200]


def test_ten_phase_defaults_match_the_reference():
    data = _data()
    problem = warm_start.warm_start_tasks(
        data, data, seed=0, tasks=10, epochs_per_task=10
    )
    info = problem.describe()
    assert info["data_ratios"] == [0.1] * 10
    noise = [0.5, 0.4, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1, 0.0]
    assert info["label_noise_ratios"] == noise
    assert info["epochs_per_phase"] == [100] * 10
    assert info["examples_per_phase"] == list(range(20, 201, 20))


def test_subsets_accumulate_with_exact_noise_redrawn_per_phase():
    data = _data()
    problem = warm_start.warm_start_tasks(
        data,
        data,
        seed=1,
        tasks=3,
        data_ratios=(0.25, 0.25, 0.5),
        label_noise_ratios=(0.5, 0.5, 0.0),
    )
    previous, noisy_before = np.zeros(0, int), None
    for t, (size, noise) in enumerate(((50, 25), (100, 50), (200, 0))):
        phase = problem.phases[t]
        assert len(phase.index) == size == len(set(phase.index))
        np.testing.assert_array_equal(phase.index[: len(previous)], previous)
        changed = phase.labels != data.labels[phase.index]
        assert changed.sum() == noise  # exact, and every one truly changed
        assert phase.labels.min() >= 0 and phase.labels.max() < 5
        noisy = set(phase.index[changed])
        if t == 1:
            assert noisy != noisy_before  # redrawn, not inherited
        noisy_before, previous = noisy, phase.index
    clean = problem.phases[2]
    np.testing.assert_array_equal(clean.labels, data.labels[clean.index])


def test_noise_labels_are_uniform_over_the_other_classes():
    rng = np.random.default_rng(0)
    labels = np.zeros(40000, np.int32)
    noisy = warm_start.noisy_labels(labels, 0.5, 4, rng)
    assert (noisy != 0).sum() == 20000
    counts = np.bincount(noisy[noisy != 0], minlength=4)[1:]
    np.testing.assert_allclose(counts / 20000, 1 / 3, atol=0.015)


def test_buffer_keeps_the_first_previous_examples():
    data = _data()
    problem = warm_start.warm_start_tasks(
        data, data, seed=0, tasks=2, data_ratios=(0.5, 0.2), buffer_size=30
    )
    first, second = (p.index for p in problem.phases)
    np.testing.assert_array_equal(second[:30], first[:30])
    assert len(second) == 70 and not set(second[30:]) & set(first)


def test_unscaled_epochs_and_seeded_phases():
    data = _data()
    a = warm_start.warm_start_tasks(
        data, data, seed=4, tasks=2, epochs_per_task=7, scale_epochs=False
    )
    b = warm_start.warm_start_tasks(data, data, seed=4, tasks=2)
    c = warm_start.warm_start_tasks(data, data, seed=5, tasks=2)
    assert [p.epochs for p in a.phases] == [7, 7]
    np.testing.assert_array_equal(a.phases[0].labels, b.phases[0].labels)
    np.testing.assert_array_equal(a.phases[0].index, b.phases[0].index)
    assert set(a.phases[0].index) != set(c.phases[0].index)


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"data_ratios": (0.1,)}, "data_ratios"),
        ({"label_noise_ratios": (0.5, 1.5)}, "label_noise_ratios"),
        ({"data_ratios": (0.0, 1.0)}, "data_ratios"),
        ({"smooth_shift": 1.0}, "smooth_shift"),
    ],
)
def test_bad_warm_start_settings(kwargs, setting):
    data = _data()
    with pytest.raises(UsageError, match=setting):
        warm_start.warm_start_tasks(data, data, seed=0, tasks=2, **kwargs)


def test_multi_stage_uniform_and_class_stages():
    data = _data(n=300, classes=6)
    uniform = warm_start.multi_stage_tasks(data, data, seed=0, tasks=3)
    sizes = [len(p.index) for p in uniform.phases]
    assert sizes == [100, 200, 300]
    for earlier, later in zip(uniform.phases, uniform.phases[1:]):
        np.testing.assert_array_equal(
            later.index[: len(earlier.index)], earlier.index
        )
    by_class = warm_start.multi_stage_tasks(
        data, data, seed=0, tasks=3, uniform_ratio=0.0
    )
    seen = set()
    for phase in by_class.phases:
        new = set(data.labels[phase.index]) - seen
        assert len(new) == 2  # the stage's own class group
        assert set(data.labels[phase.index]) == seen | new
        assert (np.isin(data.labels, list(seen | new)).sum()) == len(
            phase.index
        )
        seen |= new
    assert len(by_class.phases[-1].index) == 300


def test_smooth_shift_mixes_with_probability_one_minus_gamma_power():
    data = _data(n=400, classes=4)
    problem = warm_start.multi_stage_tasks(
        data, data, seed=0, tasks=2, epochs_per_task=2, smooth_shift=0.9
    )
    old = set(problem.phases[0].index)
    batch = 200
    steps = problem.steps_per_epoch(1, batch) * 2  # N = 4
    batches = list(problem.batches(1, batch).take(steps))
    for step, (x, y) in enumerate(batches):
        ids = x.numpy().ravel().astype(int)
        np.testing.assert_array_equal(y.numpy(), data.labels[ids])
        new = np.mean([i not in old for i in ids])
        # a new-data draw is an unseen example half of the time
        expected = (1 - 0.9 ** (50 * step / steps)) * 0.5
        assert abs(new - expected) < 0.08, (step, new, expected)
    resumed = list(problem.batches(1, batch, start_epoch=1).take(2))
    for (x, _), (x2, _) in zip(batches[2:], resumed):
        np.testing.assert_array_equal(x.numpy(), x2.numpy())

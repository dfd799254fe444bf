"""Per-class splits, i.i.d. epochs, class trajectories and ASB episodes.

The images here encode their own index (every pixel of image i equals i),
so each test can tell exactly which examples a stream produced.
"""

import numpy as np
import pytest

from zapkeras import data
from zapkeras.errors import UsageError


def _indexed(class_sizes, seed=0):
    """LabeledImages whose image i has all pixels = i; labels interleaved
    (not sorted by class) so the code cannot rely on stored order."""
    labels = np.repeat(np.arange(len(class_sizes)), class_sizes)
    labels = np.random.default_rng(seed).permutation(labels).astype(np.int32)
    n = len(labels)
    images = np.broadcast_to(
        np.arange(n, dtype=np.float32)[:, None, None, None], (n, 2, 3, 1)
    ).copy()
    return data.LabeledImages(
        images=images,
        labels=labels,
        class_names=tuple(f"c{i}" for i in range(len(class_sizes))),
    )


def _ids(x):
    """The example indices encoded in a batch of images."""
    x = np.asarray(x)
    return x.reshape(len(x), -1)[:, 0].astype(int)


def test_split_per_class_is_15_5_disjoint_and_complete():
    pool = _indexed([20, 20, 22, 16])
    train, test = data.split_per_class(pool, 15, seed=3)
    assert np.bincount(train.labels).tolist() == [15, 15, 15, 15]
    assert np.bincount(test.labels).tolist() == [5, 5, 7, 1]
    train_ids, test_ids = _ids(train.images), _ids(test.images)
    assert not set(train_ids) & set(test_ids)
    assert sorted(np.concatenate([train_ids, test_ids])) == list(range(78))
    # Each image keeps its label and the class names are unchanged.
    np.testing.assert_array_equal(pool.labels[train_ids], train.labels)
    np.testing.assert_array_equal(pool.labels[test_ids], test.labels)
    assert train.class_names == pool.class_names


def test_split_per_class_is_seeded():
    pool = _indexed([20] * 6)
    first = data.split_per_class(pool, 15, seed=1)[0]
    again = data.split_per_class(pool, 15, seed=1)[0]
    other = data.split_per_class(pool, 15, seed=2)[0]
    np.testing.assert_array_equal(_ids(first.images), _ids(again.images))
    assert set(_ids(first.images)) != set(_ids(other.images))


def test_split_per_class_needs_a_test_image_per_class():
    pool = _indexed([20, 15, 20])
    with pytest.raises(UsageError, match="train_per_class.*'c1' has 15"):
        data.split_per_class(pool, 15)


def test_steps_per_epoch_counts_the_partial_batch():
    assert data.steps_per_epoch(23, 5) == 5
    assert data.steps_per_epoch(25, 5) == 5
    with pytest.raises(UsageError, match="batch_size"):
        data.steps_per_epoch(25, 0)


def _epochs(dataset, steps, epochs):
    """[epoch][step] example ids of the first `epochs` epochs."""
    batches = [_ids(x) for x, _ in dataset.take(steps * epochs)]
    return [batches[e * steps : (e + 1) * steps] for e in range(epochs)]


def test_iid_epochs_cover_every_example_once_in_new_orders():
    pool = _indexed([7, 9, 7])
    steps = data.steps_per_epoch(23, 5)
    epochs = _epochs(data.iid_batches(pool, 5, seed=0), steps, 3)
    for batches in epochs:
        assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
        assert sorted(np.concatenate(batches)) == list(range(23))
    orders = [np.concatenate(batches).tolist() for batches in epochs]
    assert orders[0] != orders[1] != orders[2]


def test_iid_labels_match_images():
    pool = _indexed([7, 9, 7])
    for x, y in data.iid_batches(pool, 4, seed=0).take(6):
        np.testing.assert_array_equal(pool.labels[_ids(x)], y.numpy())
        assert y.dtype == np.int32


def test_iid_batches_are_seeded_and_resume_at_an_epoch():
    pool = _indexed([7, 9, 7])
    steps = data.steps_per_epoch(23, 5)
    run = _epochs(data.iid_batches(pool, 5, seed=4), steps, 4)
    again = _epochs(data.iid_batches(pool, 5, seed=4), steps, 4)
    other = _epochs(data.iid_batches(pool, 5, seed=5), steps, 1)
    resumed = _epochs(
        data.iid_batches(pool, 5, seed=4, start_epoch=2), steps, 2
    )
    for a, b in zip(run, again):
        np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    assert not np.array_equal(np.concatenate(run[0]), np.concatenate(other[0]))
    for a, b in zip(run[2:], resumed):
        np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))


def test_sequential_stream_is_class_after_class_in_stored_order():
    pool = _indexed([4, 3, 5])
    x, y = data.sequential_stream(pool, [2, 0])
    assert y.tolist() == [2] * 5 + [0] * 4
    expected = np.concatenate(
        [np.flatnonzero(pool.labels == 2), np.flatnonzero(pool.labels == 0)]
    )
    np.testing.assert_array_equal(_ids(x), expected)
    with pytest.raises(UsageError, match="class_order"):
        data.sequential_stream(pool, [0, 3])
    with pytest.raises(UsageError, match="class_order"):
        data.sequential_stream(pool, [1, 1])


def _episodes(dataset, count):
    return [
        {k: v.numpy() for k, v in episode.items()}
        for episode in dataset.take(count)
    ]


def test_asb_episode_shapes_and_dtypes():
    pool = _indexed([5, 15, 8])
    spec = data.asb_episodes(pool, inner_steps=20, remember=6).element_spec
    assert spec["inner_x"].shape == (20, 2, 3, 1)
    assert spec["inner_y"].shape == (20,)
    assert spec["remember_x"].shape == (6, 2, 3, 1)
    assert spec["remember_y"].shape == (6,)
    assert spec["inner_x"].dtype == "float32"
    assert spec["inner_y"].dtype == "int32"
    assert spec["remember_y"].dtype == "int32"


def test_asb_inner_draws_one_class_with_replacement_only_when_needed():
    sizes = np.array([5, 15, 8])
    pool = _indexed(sizes)
    episodes = _episodes(
        data.asb_episodes(pool, inner_steps=10, remember=4, seed=0), 60
    )
    seen = set()
    for episode in episodes:
        ids = _ids(episode["inner_x"])
        c = episode["inner_y"][0]
        seen.add(c)
        assert (episode["inner_y"] == c).all()
        assert (pool.labels[ids] == c).all()
        # 10 draws: repeats are forced for 5 or 8 images, none for 15.
        assert (len(set(ids)) < 10) == (sizes[c] < 10)
    assert seen == {0, 1, 2}


def test_asb_draws_without_replacement_when_the_class_is_big_enough():
    pool = _indexed([5, 15, 8])
    without = data.asb_episodes(pool, inner_steps=3, remember=4)
    for episode in _episodes(without, 50):
        assert len(set(_ids(episode["inner_x"]))) == 3
    with_replacement = _episodes(
        data.asb_episodes(pool, inner_steps=20, remember=4), 20
    )
    for episode in with_replacement:
        assert len(set(_ids(episode["inner_x"]))) < 20


def test_asb_remember_set_spans_classes_without_duplicates():
    pool = _indexed([5, 15, 8])
    episodes = _episodes(data.asb_episodes(pool, remember=12, seed=1), 20)
    for episode in episodes:
        ids = _ids(episode["remember_x"])
        assert len(set(ids)) == 12
        assert len(set(episode["remember_y"])) >= 2
        np.testing.assert_array_equal(pool.labels[ids], episode["remember_y"])
    all_ids = set(np.concatenate([_ids(e["remember_x"]) for e in episodes]))
    assert len(all_ids) == 28  # over 20 episodes every image turns up


def test_asb_episodes_are_seeded_and_resume_exactly():
    pool = _indexed([5, 15, 8])

    def run(seed, start=0):
        stream = data.asb_episodes(
            pool, remember=6, seed=seed, start_episode=start
        )
        return [
            np.concatenate([_ids(e["inner_x"]), _ids(e["remember_x"])])
            for e in _episodes(stream, 8 - start)
        ]

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))
    for a, b in zip(first[5:], run(7, start=5)):
        np.testing.assert_array_equal(a, b)


def test_asb_remember_cannot_exceed_the_data():
    with pytest.raises(UsageError, match="remember = 29 .* 0..28"):
        data.asb_episodes(_indexed([5, 15, 8]), remember=29)


def test_training_streams_run_without_the_tf_data_autotuner():
    pool = _indexed([5, 15, 8])
    streams = (
        data.iid_batches(pool, 4, seed=0),
        data.asb_episodes(pool, inner_steps=3, remember=2),
    )
    for stream in streams:
        assert stream.options().autotune.enabled is False

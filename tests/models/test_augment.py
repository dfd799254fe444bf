"""Crop/flip(/rotate) augmentation (lee2024 §3.3 / H&T, the SWR ViT):
every output is an exact padded crop, per image, seeded, inside tf.data."""

import numpy as np
import pytest
import tensorflow as tf

from zapkeras.errors import UsageError
from zapkeras.models.augment import augmentation

SIZE, PAD = 6, 2


def _image():
    """Distinct positive pixels, so a crop identifies its offset (an even
    size: no reflect-padded crop is a mirror image of itself)."""
    return np.arange(1, SIZE * SIZE * 2 + 1, dtype=np.float32).reshape(
        SIZE, SIZE, 2
    )


def _identify(out, image, mode):
    """(row offset, col offset, flipped) of `out` within the padded image."""
    padded = np.pad(image, [(PAD, PAD), (PAD, PAD), (0, 0)], mode=mode)
    matches = [
        (i, j, flip)
        for i in range(2 * PAD + 1)
        for j in range(2 * PAD + 1)
        for flip in (False, True)
        if np.array_equal(
            out,
            padded[i : i + SIZE, j : j + SIZE][:, :: -1 if flip else 1],
        )
    ]
    assert len(matches) == 1, "not a padded crop (or ambiguous)"
    return matches[0]


@pytest.mark.parametrize(
    "padding_mode, numpy_mode", [("zeros", "constant"), ("reflect", "reflect")]
)
def test_each_image_gets_its_own_uniform_crop_and_flip(
    padding_mode, numpy_mode
):
    image = _image()
    batch = np.repeat(image[None], 600, axis=0)
    stage = augmentation(padding=PAD, padding_mode=padding_mode, seed=0)
    out = stage(batch).numpy()
    found = np.array([_identify(o, image, numpy_mode) for o in out])
    # All 25 offsets and both flips occur, with about the right rates.
    offsets, counts = np.unique(found[:, :2], axis=0, return_counts=True)
    assert len(offsets) == (2 * PAD + 1) ** 2
    assert counts.min() > 6 and counts.max() < 45  # expected 24 each
    assert 0.4 < found[:, 2].mean() < 0.6
    assert not np.array_equal(out[0], out[1]) or not np.array_equal(
        out[1], out[2]
    )


def test_same_seed_same_stream_in_tf_data_and_epochs_differ():
    images = np.repeat(_image()[None], 8, axis=0)

    def run(seed):
        stage = augmentation(padding=PAD, seed=seed)
        dataset = tf.data.Dataset.from_tensor_slices(images).batch(4)
        dataset = dataset.map(stage)
        return [np.concatenate(list(dataset.as_numpy_iterator()))] + [
            np.concatenate(list(dataset.as_numpy_iterator()))
        ]

    first, again, other = run(3), run(3), run(4)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])  # a new draw per epoch
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[0], images)


def test_checkpointed_rng_state_resumes_the_stream(tmp_path):
    batch = np.repeat(_image()[None], 4, axis=0)
    stage = augmentation(padding=PAD, rotation=10, seed=5)
    stage(batch)
    checkpoint = tf.train.Checkpoint(rng=[v.value for v in stage.variables])
    path = checkpoint.save(str(tmp_path / "rng"))
    expected = [stage(batch).numpy() for _ in range(2)]
    checkpoint.restore(path)
    for want in expected:
        np.testing.assert_array_equal(stage(batch), want)


def test_single_images_in_tf_data():
    image = _image()
    stage = augmentation(padding=PAD, seed=1)
    dataset = tf.data.Dataset.from_tensor_slices(np.stack([image] * 20))
    outs = list(dataset.map(stage).as_numpy_iterator())
    assert outs[0].shape == image.shape
    found = {_identify(o, image, "constant") for o in outs}
    assert len(found) > 5


def test_identity_when_not_training_or_kind_none():
    batch = np.random.default_rng(0).random((3, 8, 8, 3), np.float32)
    stage = augmentation(rotation=15, seed=0)
    np.testing.assert_array_equal(stage(batch, training=False), batch)
    np.testing.assert_array_equal(augmentation("none")(batch), batch)


def test_rotation_turns_counter_clockwise_by_at_most_the_angle():
    size, centre = 33, 16
    image = np.zeros((size, size, 1), np.float32)
    image[centre, centre + 12] = 1.0  # a dot right of the centre
    image[centre, centre] = 2.0
    stage = augmentation(padding=0, rotation=15, seed=2)
    angles, flips = [], 0
    for out in stage(np.repeat(image[None], 200, axis=0)).numpy():
        # Nearest-neighbour sampling may show the dot twice.
        rows, cols = np.nonzero(out[..., 0] == 1.0)
        assert 1 <= len(rows) <= 2 and out[centre, centre, 0] == 2.0
        # Image rows grow downwards: counter-clockwise moves the dot up.
        x, y = cols.mean() - centre, centre - rows.mean()
        if x < 0:  # flipped first: the dot started left of the centre
            x, y = -x, -y
            flips += 1
        angles.append(np.degrees(np.arctan2(y, x)))
    angles = np.array(angles)
    # Nearest-neighbour rounding at radius 12 is worth about ±3°.
    assert angles.min() >= -3 and angles.max() <= 18
    assert angles.max() > 10 and np.mean(angles > 4) > 0.5
    assert 50 < flips < 150
    # The corners rotate in from outside the image: zero fill.
    corner = stage(np.ones((20, size, size, 1), np.float32)).numpy()
    assert (corner[:, 0, 0, 0] == 0).mean() > 0.5


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"kind": "autoaugment"}, "augmentation.kind"),
        ({"padding_mode": "edge"}, "augmentation.padding_mode"),
        ({"padding": -1}, "augmentation.padding"),
        ({"rotation": 270}, "augmentation.rotation"),
    ],
)
def test_bad_settings_raise_usage_error(kwargs, setting):
    with pytest.raises(UsageError, match=setting):
        augmentation(**kwargs)

"""The embedded glyph dataset: determinism, prefix stability, image format,
distinct classes, and a learnable-but-not-trivial difficulty."""

import time

import numpy as np
import pytest

import gin
from zapkeras import data
from zapkeras.errors import UsageError


def _glyphs(**kwargs):
    sizes = dict(background_classes=6, evaluation_classes=4, drawings=5)
    return data.glyph_class_sets(**{**sizes, **kwargs})


def test_glyphs_are_deterministic_and_keyed_by_glyph_seed():
    first, again, other = _glyphs(), _glyphs(), _glyphs(glyph_seed=1)
    for a, b, c in [
        (first.pretrain, again.pretrain, other.pretrain),
        (first.transfer, again.transfer, other.transfer),
    ]:
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert np.abs(a.images - c.images).mean() > 0.05


def test_fewer_classes_or_drawings_give_a_prefix():
    small = _glyphs(background_classes=3, evaluation_classes=2, drawings=3)
    large = _glyphs(background_classes=8, evaluation_classes=5, drawings=7)
    for part, classes in (("pretrain", 3), ("transfer", 2)):
        s, g = getattr(small, part), getattr(large, part)
        big = g.images.reshape(-1, 7, 28, 28, 1)[:classes, :3]
        np.testing.assert_array_equal(s.images, big.reshape(s.images.shape))
        assert s.class_names == g.class_names[:classes]


def test_glyph_images_are_dark_strokes_on_white():
    sets = _glyphs(image_size=20)
    for part in (sets.pretrain, sets.transfer):
        assert part.images.dtype == np.float32
        assert part.images.shape == (part.num_classes * 5, 20, 20, 1)
        assert part.labels.dtype == np.int32
        assert np.bincount(part.labels).tolist() == [5] * part.num_classes
        assert part.images.min() >= 0.0 and part.images.max() <= 1.0
        per_image = part.images.reshape(len(part.images), -1)
        assert (per_image.min(axis=1) < 0.1).all()  # every image has ink
        assert (np.median(per_image, axis=1) > 0.95).all()  # white paper
        assert (part.images[:, [0, -1]][..., [0, -1], 0] > 0.9).all()


def test_classes_are_distinct_prototypes():
    sets = _glyphs(background_classes=30, evaluation_classes=30)
    means = np.concatenate(
        [
            part.images.reshape(part.num_classes, 5, -1).mean(axis=1)
            for part in (sets.pretrain, sets.transfer)
        ]
    )
    distance = np.linalg.norm(means[:, None] - means[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    within = np.linalg.norm(
        sets.pretrain.images.reshape(30, 5, -1) - means[:30, None],
        axis=-1,
    ).mean()
    assert distance.min() > 0.5 * within


def test_glyphs_are_learnable_but_not_trivial():
    # 1-nearest-neighbour in pixel space, 15 train / 5 test per class.
    sets = _glyphs(background_classes=60, evaluation_classes=1, drawings=20)
    x = sets.pretrain.images.reshape(60, 20, -1)
    train, test = x[:, :15].reshape(900, -1), x[:, 15:].reshape(300, -1)
    distance = (
        (test**2).sum(1)[:, None] - 2 * test @ train.T + (train**2).sum(1)
    )
    predicted = distance.argmin(axis=1) // 15
    accuracy = (predicted == np.repeat(np.arange(60), 5)).mean()
    assert 0.2 < accuracy < 0.95  # chance is 1/60


def test_full_omniglot_sized_set_is_fast():
    started = time.perf_counter()
    sets = data.glyph_class_sets()
    seconds = time.perf_counter() - started
    assert sets.pretrain.images.shape == (964 * 20, 28, 28, 1)
    assert sets.transfer.images.shape == (659 * 20, 28, 28, 1)
    assert seconds < 20  # about 2 s on 2 CPU cores; generous for CI


def test_load_class_sets_embedded_uses_gin_sizes_and_subsets():
    gin.clear_config()
    try:
        gin.bind_parameter("glyph_class_sets.background_classes", 12)
        gin.bind_parameter("glyph_class_sets.evaluation_classes", 3)
        gin.bind_parameter("glyph_class_sets.drawings", 2)
        sets = data.load_class_sets(
            "embedded", None, image_size=16, pretrain_classes=5, seed=3
        )
        again = data.load_class_sets(
            "embedded", None, image_size=16, pretrain_classes=5, seed=3
        )
        with pytest.raises(UsageError, match="PRETRAIN_CLASSES.* 12 "):
            data.load_class_sets("embedded", None, pretrain_classes=13)
    finally:
        gin.clear_config()
    assert sets.pretrain.num_classes == 5
    assert sets.transfer.num_classes == 3
    assert sets.pretrain.images.shape == (10, 16, 16, 1)
    assert sorted(set(sets.pretrain.labels)) == [0, 1, 2, 3, 4]
    assert sets.pretrain.class_names == again.pretrain.class_names
    assert len(set(sets.pretrain.class_names)) == 5


def test_bad_glyph_settings_are_usage_errors():
    with pytest.raises(UsageError, match="glyph_class_sets.drawings = 0"):
        _glyphs(drawings=0)

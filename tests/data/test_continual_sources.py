"""One dataset's train/test for continual use: a prepared tfds dataset keeps
its official split; pools are split per class by a seeded fraction; the
embedded dataset contributes both of its class sets; class subsets are
seeded; mistakes name the setting."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import gin
from zapkeras.data import continual_sources
from zapkeras.errors import UsageError


@pytest.fixture(autouse=True)
def _clear_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _folder(root, classes, per_class):
    rng = np.random.default_rng(0)
    for name, count in zip(classes, per_class):
        os.makedirs(os.path.join(root, name))
        for i in range(count):
            pixels = rng.integers(0, 256, (6, 6, 1), np.uint8)
            tf.io.write_file(
                os.path.join(root, name, f"{i}.png"), tf.io.encode_png(pixels)
            )


def _codes(images):
    return {tuple(np.round(x.ravel(), 4)) for x in images}


def test_folder_pool_is_split_per_class_by_fraction(tmp_path):
    _folder(str(tmp_path / "shapes"), ["a", "b", "c"], [8, 4, 2])
    train, test = continual_sources.continual_dataset(
        "shapes", str(tmp_path), seed=0, image_size=6, test_fraction=0.25
    )
    assert train.class_names == test.class_names == ("a", "b", "c")
    assert np.bincount(test.labels).tolist() == [2, 1, 1]
    assert np.bincount(train.labels).tolist() == [6, 3, 1]
    assert not _codes(train.images) & _codes(test.images)
    again, _ = continual_sources.continual_dataset(
        "shapes", str(tmp_path), seed=0, image_size=6, test_fraction=0.25
    )
    np.testing.assert_array_equal(again.images, train.images)
    other, _ = continual_sources.continual_dataset(
        "shapes", str(tmp_path), seed=1, image_size=6, test_fraction=0.25
    )
    assert _codes(other.images) != _codes(train.images)


def test_embedded_uses_both_class_sets():
    gin.bind_parameter("glyph_class_sets.background_classes", 3)
    gin.bind_parameter("glyph_class_sets.evaluation_classes", 2)
    train, test = continual_sources.continual_dataset(
        "embedded", None, seed=0, image_size=12
    )
    assert train.num_classes == 5
    assert sum(n.startswith("evaluation/") for n in train.class_names) == 2
    assert np.bincount(train.labels).tolist() == [15] * 5
    assert np.bincount(test.labels).tolist() == [5] * 5
    assert train.images.shape[1:] == (12, 12, 1)
    subset, subset_test = continual_sources.continual_dataset(
        "embedded", None, seed=3, image_size=12, classes=2
    )
    assert subset.num_classes == 2 and set(subset.labels) == {0, 1}
    assert set(subset.class_names) < set(train.class_names)
    assert subset_test.class_names == subset.class_names


def test_tfds_dataset_keeps_its_official_split(tmp_path):
    rng = np.random.default_rng(0)

    def split(n):
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": rng.integers(0, 256, (n, 6, 6, 1), np.uint8),
                "label": np.arange(n) % 3,
            }
        )

    tfds.dataset_builders.store_as_tfds_dataset(
        name="tiny_split",
        version="1.0.0",
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(6, 6, 1)),
                "label": tfds.features.ClassLabel(names=["x", "y", "z"]),
            }
        ),
        split_datasets={"train": split(12), "test": split(6)},
        data_dir=str(tmp_path),
    )
    train, test = continual_sources.continual_dataset(
        "tiny_split", str(tmp_path), image_size=6
    )
    assert len(train.labels) == 12 and len(test.labels) == 6
    assert train.class_names == ("x", "y", "z")
    assert np.bincount(test.labels).tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"classes": 4}, "continual_dataset.classes"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path, kwargs, setting):
    _folder(str(tmp_path / "shapes"), ["a", "b", "c"], [4, 4, 4])
    with pytest.raises(UsageError, match=setting):
        continual_sources.continual_dataset(
            "shapes", str(tmp_path), image_size=6, **kwargs
        )


def test_missing_dataset_names_the_paths(tmp_path):
    with pytest.raises(UsageError, match=f"{tmp_path}/nothing/<class>/"):
        continual_sources.continual_dataset("nothing", str(tmp_path))
    with pytest.raises(UsageError, match="has 1 image"):
        _folder(str(tmp_path / "tiny"), ["a", "b"], [1, 3])
        continual_sources.continual_dataset("tiny", str(tmp_path))


def test_invert_flips_ink_and_paper_and_keeps_the_split():
    gin.bind_parameter("glyph_class_sets.background_classes", 3)
    gin.bind_parameter("glyph_class_sets.evaluation_classes", 1)
    kw = dict(seed=3, image_size=12, classes=3)
    plain = continual_sources.continual_dataset("embedded", None, **kw)
    inverted = continual_sources.continual_dataset(
        "embedded", None, invert=True, **kw
    )
    for p, i in zip(plain, inverted):
        np.testing.assert_array_equal(i.labels, p.labels)
        np.testing.assert_allclose(i.images, 1.0 - p.images)
    assert inverted[0].images.mean() < 0.5 < plain[0].images.mean()


def test_images_keep_their_own_size_unless_one_is_set(tmp_path, caplog):
    _folder(str(tmp_path / "digits"), ["a", "b"], [4, 4])  # 6×6 images
    native, _ = continual_sources.continual_dataset("digits", str(tmp_path))
    assert native.images.shape[1:3] == (6, 6)
    same, _ = continual_sources.continual_dataset(
        "digits", str(tmp_path), image_size=6
    )
    np.testing.assert_array_equal(same.images, native.images)
    with caplog.at_level("WARNING"):
        big, _ = continual_sources.continual_dataset(
            "digits", str(tmp_path), image_size=10
        )
    assert big.images.shape[1:3] == (10, 10)
    assert "from its own 6×6 to 10×10" in caplog.text
    # Resizing after loading equals resizing while decoding.
    direct = continual_sources._load("digits", str(tmp_path), 10, 0.25, 0)
    np.testing.assert_allclose(big.images, direct[0].images, atol=1e-6)


def test_images_of_several_sizes_need_a_size(tmp_path):
    root = tmp_path / "mixed"
    _folder(str(root), ["a"], [3])
    os.makedirs(root / "b")
    for i in range(3):
        pixels = np.full((8, 5, 1), 200, np.uint8)
        tf.io.write_file(str(root / "b" / f"{i}.png"), tf.io.encode_png(pixels))
    with pytest.raises(UsageError, match="continual_dataset.image_size"):
        continual_sources.continual_dataset("mixed", str(tmp_path))
    train, test = continual_sources.continual_dataset(
        "mixed", str(tmp_path), image_size=7
    )
    assert train.images.shape[1:3] == test.images.shape[1:3] == (7, 7)

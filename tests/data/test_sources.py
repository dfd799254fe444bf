"""Loading real files: Omniglot (archives, extracted folders, tfds), any
class-per-folder directory and tfds datasets, with clear errors for
missing or broken data."""

import os
import shutil
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.omniglot_layout import SMALL1
from tests.omniglot_layout import build_omniglot
from tests.omniglot_layout import needs_omniglot
from zapkeras import data
from zapkeras.errors import UsageError


@pytest.fixture(scope="module")
def omniglot_zips(tmp_path_factory):
    """<root>/omniglot/images_{background,evaluation}.zip from the shared
    subset: 3 alphabets pretrain, 2 transfer."""
    root = str(tmp_path_factory.mktemp("zips"))
    background, evaluation = build_omniglot(root, background_alphabets=3)
    return root, background, evaluation


@pytest.fixture(scope="module")
def omniglot_loaded(omniglot_zips):
    return data.load_class_sets("omniglot", omniglot_zips[0], image_size=28)


def _characters(alphabets):
    """Sorted '<alphabet>/<character>' names of the shared subset."""
    with zipfile.ZipFile(SMALL1) as source:
        return sorted(
            {
                "/".join(m.split("/")[1:3])
                for m in source.namelist()
                if m.endswith(".png") and m.split("/")[1] in alphabets
            }
        )


@needs_omniglot
def test_omniglot_archives_load_as_background_and_evaluation(
    omniglot_zips, omniglot_loaded
):
    _, background, evaluation = omniglot_zips
    for part, alphabets in (
        (omniglot_loaded.pretrain, background),
        (omniglot_loaded.transfer, evaluation),
    ):
        names = _characters(alphabets)
        assert part.class_names == tuple(names)
        assert len(part.labels) == 20 * len(names)
        assert np.bincount(part.labels).tolist() == [20] * len(names)
        assert part.images.shape == (20 * len(names), 28, 28, 1)
        assert part.images.dtype == np.float32
        assert part.images.min() == 0.0 and part.images.max() == 1.0
        assert 0.8 < part.images.mean() < 0.97  # white paper, dark ink


@needs_omniglot
def test_omniglot_extracted_folders_match_the_archives(
    omniglot_zips, omniglot_loaded, tmp_path
):
    for name in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(
            os.path.join(omniglot_zips[0], "omniglot", f"{name}.zip")
        ) as archive:
            archive.extractall(tmp_path / "omniglot")
    sets = data.load_class_sets("omniglot", str(tmp_path), image_size=28)
    for got, want in (
        (sets.pretrain, omniglot_loaded.pretrain),
        (sets.transfer, omniglot_loaded.transfer),
    ):
        assert got.class_names == want.class_names
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.images, want.images)


def _character(member):
    """NN of '<set>/<alphabet>/characterNN/<file>.png'."""
    return int(member.split("/")[2][-2:])


@needs_omniglot
def test_omniglot_tfds_prepared_matches_the_archives(omniglot_loaded, tmp_path):
    # A genuine tfds omniglot/3.0.0 directory (same features as the
    # registered builder) holding 2 characters per alphabet.
    with zipfile.ZipFile(SMALL1) as source:
        members = sorted(m for m in source.namelist() if m.endswith(".png"))
        alphabets = sorted({m.split("/")[1] for m in members})

        def split(chosen):
            rows = [
                m
                for m in members
                if m.split("/")[1] in chosen and _character(m) <= 2
            ]
            grey = [tf.io.decode_png(source.read(m), 1) for m in rows]
            return tf.data.Dataset.from_tensor_slices(
                {
                    "image": np.stack([np.repeat(g, 3, -1) for g in grey]),
                    "alphabet": [
                        alphabets.index(m.split("/")[1]) for m in rows
                    ],
                    "alphabet_char_id": [_character(m) - 1 for m in rows],
                    "label": np.zeros(len(rows), np.int64),
                }
            )

        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(105, 105, 3)),
                "alphabet": tfds.features.ClassLabel(names=alphabets),
                "alphabet_char_id": np.int64,
                "label": tfds.features.ClassLabel(num_classes=1623),
            }
        )
        tfds.dataset_builders.store_as_tfds_dataset(
            name="omniglot",
            version="3.0.0",
            features=features,
            split_datasets={
                "train": split(alphabets[:3]),
                "test": split(alphabets[3:]),
            },
            data_dir=str(tmp_path),
        )
    sets = data.load_class_sets("omniglot", str(tmp_path), image_size=28)
    for got, want in (
        (sets.pretrain, omniglot_loaded.pretrain),
        (sets.transfer, omniglot_loaded.transfer),
    ):
        assert got.class_names == tuple(
            n for n in want.class_names if n[-2:] in ("01", "02")
        )
        assert got.images.shape == (got.num_classes * 20, 28, 28, 1)
        # Same images per class, whatever order tfds stored them in.
        for c, name in enumerate(got.class_names):
            mine = got.images[got.labels == c].reshape(20, -1)
            theirs = want.images[
                want.labels == want.class_names.index(name)
            ].reshape(20, -1)
            np.testing.assert_allclose(
                np.sort(mine.sum(1)), np.sort(theirs.sum(1)), rtol=1e-5
            )


@needs_omniglot
def test_one_omniglot_archive_alone_names_the_missing_one(
    omniglot_zips, tmp_path
):
    os.makedirs(tmp_path / "omniglot")
    shutil.copy(
        os.path.join(omniglot_zips[0], "omniglot", "images_background.zip"),
        tmp_path / "omniglot",
    )
    missing = str(tmp_path / "omniglot" / "images_evaluation.zip")
    with pytest.raises(UsageError, match=f"not {missing}"):
        data.load_class_sets("omniglot", str(tmp_path))


def test_missing_omniglot_lists_the_searched_paths(tmp_path):
    root = str(tmp_path / "omniglot")
    with pytest.raises(UsageError) as error:
        data.load_class_sets("omniglot", str(tmp_path))
    message = str(error.value)
    for searched in (
        "images_background.zip",
        "images_evaluation.zip",
        "images_background,",
        "images_evaluation,",
        "3.0.0",
    ):
        assert f"{root}/{searched}" in message
    assert "github.com/brendenlake/omniglot" in message


@needs_omniglot
def test_corrupt_omniglot_png_is_named(omniglot_zips, tmp_path):
    source = os.path.join(omniglot_zips[0], "omniglot")
    os.makedirs(tmp_path / "omniglot")
    shutil.copy(
        os.path.join(source, "images_evaluation.zip"), tmp_path / "omniglot"
    )
    broken = tmp_path / "omniglot" / "images_background.zip"
    with zipfile.ZipFile(
        os.path.join(source, "images_background.zip")
    ) as good, zipfile.ZipFile(broken, "w") as out:
        members = sorted(m for m in good.namelist() if m.endswith(".png"))
        for member in members:
            corrupt = member == members[30]
            out.writestr(
                member, b"\x89PNG not really" if corrupt else good.read(member)
            )
    with pytest.raises(
        UsageError, match=f"Cannot read image {broken}:{members[30]}"
    ):
        data.load_class_sets("omniglot", str(tmp_path))


@pytest.mark.parametrize(
    "member", ["images_background/../../evil/x/0.png", "/etc/a/b/c.png"]
)
def test_omniglot_archive_with_paths_outside_is_refused(tmp_path, member):
    png = tf.io.encode_png(np.zeros((4, 4, 1), np.uint8)).numpy()
    os.makedirs(tmp_path / "omniglot")
    for name in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(tmp_path / "omniglot" / f"{name}.zip", "w") as z:
            z.writestr(f"{name}/Alphabet/character01/0.png", png)
            if name == "images_background":
                z.writestr(member, png)
    with pytest.raises(UsageError, match="zip slip"):
        data.load_class_sets("omniglot", str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["omniglot"]
    assert not os.path.exists(tmp_path.parent / "evil")


def _write_images(root, classes, per_class, size, channels, fmt="png"):
    """root/<class>/<i>.<fmt> with distinct seeded pixel values."""
    rng = np.random.default_rng(0)
    for name in classes:
        os.makedirs(os.path.join(root, name))
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, channels), np.uint8)
            encode = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
            tf.io.write_file(
                os.path.join(root, name, f"{i}.{fmt}"), encode(pixels)
            )


def test_class_per_folder_dataset_splits_sorted_classes(tmp_path):
    root = str(tmp_path / "shapes")
    _write_images(root, ["e", "b", "d", "a"], 4, 10, 3)
    _write_images(root, ["c"], 4, 10, 3, fmt="jpg")
    with open(os.path.join(root, "README.txt"), "w") as f:
        f.write("not a class")
    sets = data.load_class_sets("shapes", str(tmp_path), image_size=8)
    assert sets.pretrain.class_names == ("a", "b", "c")  # round(0.6 * 5)
    assert sets.transfer.class_names == ("d", "e")
    assert sets.pretrain.images.shape == (12, 8, 8, 3)
    assert sets.transfer.images.shape == (8, 8, 8, 3)
    assert np.bincount(sets.pretrain.labels).tolist() == [4, 4, 4]
    assert 0.0 <= sets.pretrain.images.min() < sets.pretrain.images.max() <= 1
    half = data.load_class_sets(
        "shapes", str(tmp_path), image_size=8, pretrain_fraction=0.4
    )
    assert half.pretrain.class_names == ("a", "b")


def test_greyscale_folder_gives_one_channel(tmp_path):
    _write_images(str(tmp_path / "grey"), ["x", "y"], 3, 12, 1)
    sets = data.load_class_sets("grey", str(tmp_path), image_size=12)
    assert sets.pretrain.images.shape == (3, 12, 12, 1)
    # Same size in and out: Lanczos leaves the pixels (almost) unchanged.
    raw = tf.io.decode_png(tf.io.read_file(str(tmp_path / "grey/x/0.png")))
    np.testing.assert_allclose(
        sets.pretrain.images[0], raw.numpy() / 255.0, atol=1e-5
    )


def test_folder_errors_name_the_file_or_folder(tmp_path):
    root = tmp_path / "broken"
    _write_images(str(root), ["a", "b"], 2, 6, 1)
    (root / "b" / "1.png").write_bytes(b"garbage")
    with pytest.raises(UsageError, match=f"{root}/b/1.png"):
        data.load_class_sets("broken", str(tmp_path))
    (root / "b" / "1.png").unlink()
    os.makedirs(root / "empty")
    with pytest.raises(UsageError, match=f"{root}/empty has no"):
        data.load_class_sets("broken", str(tmp_path))


def test_unknown_dataset_lists_the_searched_paths(tmp_path):
    with pytest.raises(UsageError) as error:
        data.load_class_sets("mnist", str(tmp_path))
    message = str(error.value)
    assert f"{tmp_path}/mnist/<class>/" in message
    assert f"{tmp_path}/mnist/3.0.1" in message
    assert "tfds build mnist" in message
    with pytest.raises(UsageError, match=f"{tmp_path}/my-images/<class>/"):
        data.load_class_sets("my-images", str(tmp_path))


def test_tfds_dataset_pools_all_splits(tmp_path):
    rng = np.random.default_rng(0)

    def split(n):
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": rng.integers(0, 256, (n, 6, 6, 1), np.uint8),
                "label": np.arange(n) % 5,
            }
        )

    tfds.dataset_builders.store_as_tfds_dataset(
        name="tiny_pool",
        version="1.0.0",
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(6, 6, 1)),
                "label": tfds.features.ClassLabel(
                    names=["red", "blue", "green", "amber", "cyan"]
                ),
            }
        ),
        split_datasets={"train": split(20), "test": split(10)},
        data_dir=str(tmp_path),
    )
    sets = data.load_class_sets("tiny_pool", str(tmp_path), image_size=6)
    assert sets.pretrain.class_names == ("amber", "blue", "cyan")
    assert sets.transfer.class_names == ("green", "red")
    assert len(sets.pretrain.labels) + len(sets.transfer.labels) == 30
    assert np.bincount(sets.transfer.labels).tolist() == [6, 6]
    assert sets.pretrain.images.shape[1:] == (6, 6, 1)


def test_pretrain_classes_is_a_seeded_relabelled_subset(tmp_path):
    _write_images(str(tmp_path / "many"), [f"k{i}" for i in range(10)], 2, 4, 1)

    def load(**kwargs):
        return data.load_class_sets(
            "many", str(tmp_path), image_size=4, **kwargs
        )

    full = load()
    subset = load(pretrain_classes=3, seed=1)
    assert subset == subset  # dataclass equality on the same object
    again, other = load(pretrain_classes=3, seed=1), load(
        pretrain_classes=3, seed=2
    )
    assert subset.pretrain.class_names == again.pretrain.class_names
    assert subset.pretrain.class_names != other.pretrain.class_names
    assert set(subset.pretrain.class_names) < set(full.pretrain.class_names)
    assert sorted(set(subset.pretrain.labels)) == [0, 1, 2]
    for c, name in enumerate(subset.pretrain.class_names):
        np.testing.assert_array_equal(
            subset.pretrain.images[subset.pretrain.labels == c],
            full.pretrain.images[
                full.pretrain.labels == full.pretrain.class_names.index(name)
            ],
        )
    assert subset.transfer.class_names == full.transfer.class_names
    with pytest.raises(UsageError, match="PRETRAIN_CLASSES.*choose 1..6"):
        load(pretrain_classes=7)


def test_subset_classes_relabels_in_the_given_order():
    pool = data.LabeledImages(
        images=np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1),
        labels=np.array([0, 1, 2, 0, 1, 2], np.int32),
        class_names=("a", "b", "c"),
    )
    subset = pool.subset_classes([2, 0])
    assert subset.class_names == ("c", "a")
    assert subset.labels.tolist() == [1, 0, 1, 0]
    assert subset.images.ravel().tolist() == [0, 2, 3, 5]
    assert subset.num_classes == 2
    with pytest.raises(UsageError, match="subset_classes"):
        pool.subset_classes([0, 3])


def test_train_test_class_folders_are_the_fixed_class_split(tmp_path):
    """Mini-ImageNet / Omni-image layout: NAME/train/<class>/ pretrains,
    NAME/test/<class>/ is the transfer pool, whatever the class names."""
    root = tmp_path / "mini_imagenet"
    _write_images(str(root / "train"), ["z1", "z2", "z3"], 4, 10, 3)
    _write_images(str(root / "test"), ["a1", "a2"], 5, 10, 3)
    sets = data.load_class_sets("mini_imagenet", str(tmp_path), image_size=8)
    assert sets.pretrain.class_names == ("z1", "z2", "z3")
    assert sets.transfer.class_names == ("a1", "a2")
    assert sets.transfer.images.shape == (10, 8, 8, 3)
    plain = sets.pretrain.images
    normed = data.load_class_sets(
        "mini_imagenet", str(tmp_path), image_size=8, normalize="imagenet"
    ).pretrain.images
    np.testing.assert_allclose(
        normed[..., 1], (plain[..., 1] - 0.456) / 0.224, rtol=1e-5
    )
    with pytest.raises(UsageError, match="normalize"):
        data.load_class_sets(
            "mini_imagenet", str(tmp_path), image_size=8, normalize="cifar"
        )

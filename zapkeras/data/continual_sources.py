"""One dataset's train and test images, all its classes, for continual use.

The continual problems need a single pool of classes with a held-out test
set, not pretraining/transfer class sets. A tfds dataset prepared under
`data_dir` with 'train' and 'test' splits keeps its official split (MNIST
60 000 / 10 000, CIFAR); otherwise every class of the dataset (for
'embedded' and 'omniglot' both of their class sets) is split per class
with a seeded shuffle. The dataset is looked up by name in
zapkeras.data.registry, as for `load_class_sets`. Nothing is downloaded:
the loaders fail with the paths searched.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

import gin
from zapkeras import settings
from zapkeras import validate
from zapkeras.data import files
from zapkeras.data import registry
from zapkeras.data.types import ClassSets
from zapkeras.data.types import LabeledImages
from zapkeras.errors import UsageError

# Random streams, disjoint from those of continual.py (0-6).
_SPLIT, _CLASSES = 7, 8

_ImageSize = settings.Maybe(
    settings.PositiveInt(
        example=28,
        note="The side in pixels to resize to; None keeps the dataset's own "
        "size.",
    )
)
_Classes = settings.Maybe(
    settings.PositiveInt(example=10, note="None keeps all the classes.")
)
_TestFraction = settings.Fraction(
    low_open=True,
    high_open=True,
    note="The per-class share held out for testing.",
)


@gin.configurable(denylist=["data_dir", "seed"])
@settings.declared("continual_dataset")
def continual_dataset(
    name,
    data_dir,
    *,
    seed=0,
    image_size: _ImageSize = None,
    classes: _Classes = None,
    test_fraction: _TestFraction = 0.25,
    invert: settings.Bool = False,
):
    """(train, test) LabeledImages of dataset `name` (the DATASET macro).

    Args:
      name: 'embedded', 'omniglot', a tfds name or an image folder name.
      data_dir: the --data_dir root.
      seed: the run seed (class subset and per-class splits).
      image_size: side in pixels to resize every image to; None (the
        default) keeps the dataset's own size (MNIST 28, CIFAR 32, the
        embedded glyphs 28), which is the reference's. A resize is logged.
      classes: keep a seeded random subset of this many classes (None: all),
        relabelled 0..classes-1 in sorted order.
      test_fraction: per-class share held out for testing when the dataset
        has no official test split (0.25 = Omniglot's 15/5).
      invert: x → 1 − x, for ink-on-paper images (Omniglot, the embedded
        glyphs) to have MNIST's dark background: permuted tasks and MLPs
        whose inputs are mostly 1 start with saturated units.
    """
    seed = validate.non_negative_int(seed, "--seed")
    files.check_data_dir(data_dir)
    try:
        split = _load(name, data_dir, None, test_fraction, seed)
    except files.MixedSizes:
        if image_size is None:
            raise
        logging.warning(
            "continual_dataset: resizing the images of '%s' (of several "
            "sizes) to %d×%d (continual_dataset.image_size).",
            name,
            image_size,
            image_size,
        )
        split = _load(name, data_dir, image_size, test_fraction, seed)
    else:
        split = _resized(name, split, image_size)
    train, test = split
    if invert:
        train, test = (
            dataclasses.replace(d, images=1.0 - d.images) for d in split
        )
    if classes is None:
        return train, test
    if classes > train.num_classes:
        raise UsageError(
            f"continual_dataset.classes = {classes} but '{name}' has "
            f"{train.num_classes} classes; choose 1..{train.num_classes} or "
            "None for all."
        )
    keep = np.sort(
        np.random.default_rng([seed, _CLASSES]).choice(
            train.num_classes, classes, replace=False
        )
    )
    return train.subset_classes(keep), test.subset_classes(keep)


def _load(name, data_dir, image_size, test_fraction, seed):
    """(train, test) of `name`: its official split, else a seeded split
    of its pool."""
    split = _official_split(name, data_dir, image_size)
    if split is None:
        pool = _pool(name, data_dir, image_size)
        split = _split(pool, test_fraction, seed)
    return split


def _resized(name, split, image_size):
    """`split` at image_size² (logged), or as it is when None or already
    that size."""
    height, width = split[0].images.shape[1:3]
    if image_size is None or (height, width) == (image_size, image_size):
        return split
    logging.warning(
        "continual_dataset: resizing '%s' from its own %d×%d to %d×%d "
        "(continual_dataset.image_size; None keeps the own size).",
        name,
        height,
        width,
        image_size,
        image_size,
    )
    return tuple(
        dataclasses.replace(d, images=files.resize(d.images, image_size))
        for d in split
    )


def _pool(name, data_dir, image_size):
    """Every class of `name` in one LabeledImages (both class sets of a
    dataset that has them, pretraining classes first)."""
    found = registry.loader(name, "continual_dataset.name")(
        name, data_dir, image_size
    )
    return found.pool() if isinstance(found, ClassSets) else found


def _split(pool, test_fraction, seed):
    """(train, test): per class a seeded shuffle, the last
    max(1, round(test_fraction · count)) images test."""
    test = np.zeros(len(pool.labels), bool)
    for c in range(pool.num_classes):
        members = np.flatnonzero(pool.labels == c)
        if len(members) < 2:
            raise UsageError(
                f"Class '{pool.class_names[c]}' has {len(members)} image(s); "
                "each class needs at least 2 (one to train, one to test)."
            )
        k = min(max(1, round(test_fraction * len(members))), len(members) - 1)
        order = np.random.default_rng([seed, _SPLIT, c]).permutation(members)
        test[order[len(members) - k :]] = True
    return pool.take(~test), pool.take(test)


def _official_split(name, data_dir, image_size):
    """(train, test) of a prepared tfds dataset with both splits, else None
    (a class-per-folder directory of that name takes precedence)."""
    if not isinstance(name, str) or name in registry.names() or not data_dir:
        return None
    data_dir = os.path.expanduser(data_dir)
    folder = os.path.join(data_dir, name)
    if tf.io.gfile.isdir(folder) and not tf.io.gfile.glob(
        os.path.join(folder, "*", "dataset_info.json")
    ):
        return None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except ValueError:  # not a tfds name
        return None
    if not builder.is_prepared() or not {"train", "test"} <= set(
        builder.info.splits
    ):
        return None
    image, label = builder.info.supervised_keys or ("image", "label")
    features = builder.info.features
    if image not in features or label not in features:
        return None
    names = tuple(features[label].names)
    return tuple(
        _tfds_split(name, data_dir, split, image, label, names, image_size)
        for split in ("train", "test")
    )


def _tfds_split(name, data_dir, split, image, label, names, image_size):
    dataset = tfds.load(name, split=split, data_dir=data_dir, download=False)
    parts = files.batches(
        dataset.map(
            lambda x: (files.to_float(x[image], image_size), x[label]),
            num_parallel_calls=tf.data.AUTOTUNE,
        ),
        f"tfds dataset '{name}' ({split})",
    )
    images, labels = (np.concatenate(p) for p in zip(*parts))
    return LabeledImages(
        images=images, labels=labels.astype(np.int32), class_names=names
    )

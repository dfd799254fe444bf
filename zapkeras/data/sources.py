"""Labelled image classes in memory, loaded from local files only.

`load_class_sets` gives two disjoint sets of classes: one to pretrain on and
one to transfer to. The dataset is looked up by name in
zapkeras.data.registry: the embedded glyph dataset (embedded.py), Omniglot
(omniglot.py), or any class-per-folder image directory or tfds-prepared
dataset (files.py). Nothing is ever downloaded; missing data fails with the
paths searched and how to get the data.
"""

import dataclasses

import numpy as np

import gin
from zapkeras import settings
from zapkeras.data import files
from zapkeras.data import registry
from zapkeras.data.files import folder_or_tfds  # noqa: F401  (old path)
from zapkeras.data.files import to_float  # noqa: F401  (old path)
from zapkeras.data.types import ClassSets
from zapkeras.data.types import LabeledImages  # noqa: F401  (old path)
from zapkeras.errors import UsageError

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_PRETRAIN_CLASSES = "PRETRAIN_CLASSES (load_class_sets.pretrain_classes)"
_ImageSize = settings.PositiveInt(note="The side of the images in pixels.")
_PretrainClasses = settings.Maybe(
    settings.PositiveInt(
        example=964, note="None keeps all the pretraining classes."
    )
)
_PretrainFraction = settings.Fraction(
    low_open=True,
    high_open=True,
    note="The share of a single pool's classes that pretrains.",
)
_Normalize = settings.OneOf(
    None,
    "imagenet",
    hint="use None (keep [0, 1]) or 'imagenet' (RGB images).",
)


@gin.configurable
@settings.declared("load_class_sets")
def load_class_sets(
    name,
    data_dir,
    *,
    image_size: _ImageSize = 28,
    pretrain_classes: _PretrainClasses = None,
    seed: settings.NonNegativeInt = 0,
    pretrain_fraction: _PretrainFraction = 0.6,
    normalize: _Normalize = None,
):
    """Pretraining and transfer classes of dataset `name`.

    `name` is 'embedded', 'omniglot', a directory under `data_dir` with
    `train/<class>/` and `test/<class>/` folders (fixed class splits such as
    Mini-ImageNet's), a class-per-folder directory, or a tfds dataset
    prepared under `data_dir`. A single pool of classes (folder, tfds) is
    split by sorted class name: the first `pretrain_fraction` pretrain,
    the rest transfer. `normalize='imagenet'` standardises RGB channels by
    ImageNet's mean and std, as the reference does for Mini-ImageNet
    (docs/reference_codes.md §1.6); None keeps [0, 1]. `pretrain_classes`
    keeps a random subset (chosen by `seed`) of the pretraining classes.
    """
    files.check_data_dir(data_dir)
    load = registry.loader(name, "load_class_sets.name")
    sets = load(name, data_dir, image_size)
    if not isinstance(sets, ClassSets):
        sets = _split_pool(sets, pretrain_fraction)
    if normalize is not None:
        sets = ClassSets(
            pretrain=_normalized(sets.pretrain, normalize),
            transfer=_normalized(sets.transfer, normalize),
        )
    if pretrain_classes is None:
        return sets
    available = sets.pretrain.num_classes
    if pretrain_classes > available:
        raise UsageError(
            f"{_PRETRAIN_CLASSES} = {pretrain_classes} but '{name}' has "
            f"{available} pretraining classes; choose 1..{available}, or None "
            "for all."
        )
    chosen = np.random.default_rng(seed).choice(
        available, pretrain_classes, replace=False
    )
    return ClassSets(
        pretrain=sets.pretrain.subset_classes(np.sort(chosen)),
        transfer=sets.transfer,
    )


def _normalized(data, normalize):
    if normalize != "imagenet" or data.images.shape[-1] != 3:
        raise UsageError(
            f"load_class_sets.normalize = {normalize!r}; use None, or "
            "'imagenet' for RGB images (this dataset has "
            f"{data.images.shape[-1]} channel(s))."
        )
    images = (data.images - np.float32(_IMAGENET_MEAN)) / np.float32(
        _IMAGENET_STD
    )
    return dataclasses.replace(data, images=images.astype(np.float32))


def _split_pool(pool, pretrain_fraction):
    """Classes sorted by name: the first fraction pretrain, the rest
    transfer."""
    count = round(pretrain_fraction * pool.num_classes)
    if not 1 <= count < pool.num_classes:
        raise UsageError(
            f"load_class_sets.pretrain_fraction = {pretrain_fraction} leaves "
            f"{count} of {pool.num_classes} classes for pretraining; both "
            "pretraining and transfer need at least one class: use a "
            "fraction in (0, 1) and a dataset with at least 2 classes."
        )
    order = sorted(range(pool.num_classes), key=pool.class_names.__getitem__)
    return ClassSets(
        pretrain=pool.subset_classes(order[:count]),
        transfer=pool.subset_classes(order[count:]),
    )

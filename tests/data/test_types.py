"""The data containers: subsets by index or mask keep every class, and a
ClassSets pools into one LabeledImages with the transfer classes last."""

import numpy as np

from zapkeras import data
from zapkeras.data import continual
from zapkeras.data import sources
from zapkeras.data import types


def _images():
    return types.LabeledImages(
        images=np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1),
        labels=np.array([0, 1, 2, 0, 1, 2], np.int32),
        class_names=("a", "b", "c"),
    )


def test_take_by_indices_or_mask_keeps_the_classes():
    pool = _images()
    picked = pool.take(np.array([4, 0, 3]))
    assert picked.images.ravel().tolist() == [4, 0, 3]
    assert picked.labels.tolist() == [1, 0, 0]
    assert picked.class_names == ("a", "b", "c") and picked.num_classes == 3
    masked = pool.take(pool.labels == 2)
    assert masked.images.ravel().tolist() == [2, 5]
    assert masked.class_names == pool.class_names


def test_pool_puts_the_transfer_classes_after_the_pretraining_ones():
    pretrain = _images()
    transfer = types.LabeledImages(
        images=np.full((2, 1, 1, 1), 9, np.float32),
        labels=np.array([1, 0], np.int32),
        class_names=("x", "y"),
    )
    pool = types.ClassSets(pretrain, transfer).pool()
    assert pool.class_names == ("a", "b", "c", "x", "y")
    assert pool.labels.tolist() == [0, 1, 2, 0, 1, 2, 4, 3]
    assert pool.labels.dtype == np.int32
    assert pool.images.ravel().tolist() == [0, 1, 2, 3, 4, 5, 9, 9]


def test_the_old_import_paths_name_the_same_classes():
    assert data.LabeledImages is sources.LabeledImages is types.LabeledImages
    assert data.ClassSets is sources.ClassSets is types.ClassSets
    assert continual.Phase is types.Phase

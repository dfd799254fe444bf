"""The plain data containers of zapkeras.data.

They live apart from the modules that fill them (embedded glyphs, files,
streams, continual problems) so that every one of those can import them
without importing another.
"""

import dataclasses

import numpy as np

from zapkeras.errors import UsageError


@dataclasses.dataclass(frozen=True)
class LabeledImages:
    """Images float32 [N, H, W, C] in [0, 1] (unless normalised), labels
    int32 [N] indexing `class_names`."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple

    @property
    def num_classes(self):
        return len(self.class_names)

    def take(self, indices):
        """The examples at `indices` (integer indices or a boolean mask),
        in that order; the classes are kept, even those left empty."""
        return LabeledImages(
            images=self.images[indices],
            labels=self.labels[indices],
            class_names=self.class_names,
        )

    def subset_classes(self, classes):
        """Only the images of `classes`, relabelled 0..len-1 in that order."""
        classes = np.asarray(classes, dtype=np.int64).reshape(-1)
        if len(np.unique(classes)) != len(classes) or not np.all(
            (classes >= 0) & (classes < self.num_classes)
        ):
            raise UsageError(
                f"subset_classes({classes.tolist()}): class ids must be "
                f"distinct and in 0..{self.num_classes - 1}."
            )
        relabel = np.full(self.num_classes, -1, np.int32)
        relabel[classes] = np.arange(len(classes))
        keep = relabel[self.labels] >= 0
        return LabeledImages(
            images=self.images[keep],
            labels=relabel[self.labels[keep]],
            class_names=tuple(self.class_names[c] for c in classes),
        )


@dataclasses.dataclass(frozen=True)
class ClassSets:
    """Disjoint classes: `pretrain` (e.g. Omniglot background) and
    `transfer` (e.g. Omniglot evaluation)."""

    pretrain: LabeledImages
    transfer: LabeledImages

    def pool(self):
        """Both sets as one LabeledImages: the pretraining images and
        classes first, then the transfer ones (labels shifted after
        them)."""
        first, second = self.pretrain, self.transfer
        return LabeledImages(
            images=np.concatenate([first.images, second.images]),
            labels=np.concatenate(
                [first.labels, second.labels + first.num_classes]
            ).astype(np.int32),
            class_names=first.class_names + second.class_names,
        )


@dataclasses.dataclass(frozen=True)
class Phase:
    """One task's training data in a continual problem: examples `index`
    of the train images with (possibly noisy) `labels`, trained for
    `epochs` epochs."""

    index: np.ndarray
    labels: np.ndarray
    epochs: int

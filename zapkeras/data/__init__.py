"""Datasets as in-memory labelled images, and the seeded streams that
present them for pretraining, transfer and ASB / Meta-ASB episodes.

Importing the package registers every dataset loader
(zapkeras.data.registry): embedded, omniglot and files (folders, tfds).
"""

from zapkeras.data import files  # noqa: F401  (registers the fallback)
from zapkeras.data import omniglot  # noqa: F401  (registers 'omniglot')
from zapkeras.data.embedded import glyph_class_sets
from zapkeras.data.sources import load_class_sets
from zapkeras.data.streams import asb_episodes
from zapkeras.data.streams import iid_batches
from zapkeras.data.streams import sequential_stream
from zapkeras.data.streams import split_per_class
from zapkeras.data.streams import steps_per_epoch
from zapkeras.data.types import ClassSets
from zapkeras.data.types import LabeledImages

__all__ = [
    "ClassSets",
    "LabeledImages",
    "asb_episodes",
    "glyph_class_sets",
    "iid_batches",
    "load_class_sets",
    "sequential_stream",
    "split_per_class",
    "steps_per_epoch",
]

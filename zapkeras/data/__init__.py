"""Datasets as in-memory labelled images, and the seeded streams that
present them for pretraining, transfer and ASB / Meta-ASB episodes."""

from zapkeras.data.embedded import glyph_class_sets
from zapkeras.data.sources import ClassSets
from zapkeras.data.sources import LabeledImages
from zapkeras.data.sources import load_class_sets
from zapkeras.data.streams import asb_episodes
from zapkeras.data.streams import iid_batches
from zapkeras.data.streams import sequential_stream
from zapkeras.data.streams import split_per_class
from zapkeras.data.streams import steps_per_epoch

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

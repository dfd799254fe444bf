"""Omniglot from local files, registered as dataset 'omniglot'.

Background classes pretrain, evaluation classes transfer. Read from the
original archives (without extracting them), the extracted folders, or a
tfds-prepared `omniglot/3.0.0`, searched in that order under
DATA_DIR/omniglot/.
"""

import os
import zipfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from zapkeras.data import files
from zapkeras.data import registry
from zapkeras.data.types import ClassSets
from zapkeras.errors import UsageError

_OMNIGLOT_SETS = ("images_background", "images_evaluation")
_OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/tree/master/python"


@registry.register("omniglot")
def load_omniglot(name, data_dir, image_size):
    """ClassSets: background classes pretrain, evaluation classes
    transfer."""
    data_dir = files.data_root(name, data_dir)
    root = os.path.join(data_dir, "omniglot")
    archives = [os.path.join(root, f"{s}.zip") for s in _OMNIGLOT_SETS]
    folders = [os.path.join(root, s) for s in _OMNIGLOT_SETS]
    prepared = os.path.join(root, "3.0.0")
    for paths, exists, read in (
        (archives, tf.io.gfile.exists, _omniglot_archive),
        (folders, tf.io.gfile.isdir, _omniglot_folder),
    ):
        found = [exists(path) for path in paths]
        if all(found):
            return ClassSets(*(read(path, image_size) for path in paths))
        if any(found):
            missing = paths[found.index(False)]
            raise UsageError(
                f"Omniglot: found {paths[found.index(True)]} but not "
                f"{missing}; both background and evaluation sets are "
                f"needed. Put {os.path.basename(missing)} (from "
                f"{_OMNIGLOT_URL}) in {root}/."
            )
    if tf.io.gfile.isdir(prepared):
        return ClassSets(
            *(
                _omniglot_tfds(data_dir, s, image_size)
                for s in ("train", "test")
            )
        )
    raise UsageError(
        "Omniglot not found. Searched: "
        + ", ".join(archives + folders + [prepared])
        + f". Download images_background.zip and images_evaluation.zip "
        f"from {_OMNIGLOT_URL} into {root}/ (no need to extract them), "
        "or point --data_dir at the directory holding omniglot/."
    )


def _omniglot_archive(path, image_size):
    """Classes of one original Omniglot zip, read without extracting."""
    try:
        with zipfile.ZipFile(tf.io.gfile.GFile(path, "rb")) as archive:
            members_of = {}
            for member in sorted(archive.namelist()):
                parts = member.rstrip("/").split("/")
                if member.startswith("/") or ".." in parts or "\\" in member:
                    raise UsageError(
                        f"Omniglot: {path} holds the member {member!r}, a "
                        "path outside the archive's folder (a 'zip slip'); "
                        "nothing was read. Use the original archive from "
                        f"{_OMNIGLOT_URL}."
                    )
                if len(parts) == 3 and member.endswith("/"):
                    members_of.setdefault("/".join(parts[1:]), [])
                elif len(parts) == 4 and member.endswith(".png"):
                    members_of.setdefault("/".join(parts[1:3]), []).append(
                        member
                    )
            blobs = {
                name: [archive.read(m) for m in members]
                for name, members in members_of.items()
            }
    except zipfile.BadZipFile as error:
        raise UsageError(
            f"Omniglot: {path} is not a readable zip archive ({error}); "
            f"download it again from {_OMNIGLOT_URL}."
        ) from error
    for name, members in members_of.items():
        if not members:
            raise UsageError(
                f"Omniglot: class folder {path}:{name}/ has no .png images; "
                f"download {os.path.basename(path)} again from "
                f"{_OMNIGLOT_URL}."
            )
    paths = {
        name: [f"{path}:{m}" for m in members]
        for name, members in members_of.items()
    }
    layout = f"{path}:<set>/<alphabet>/<character>/*.png"
    return files.decode_classes(paths, image_size, 1, layout, blobs=blobs)


def _omniglot_folder(path, image_size):
    """Classes of one extracted Omniglot set, `alphabet/character/*.png`."""
    images_of = {}
    for alphabet in files.subfolders(path):
        for character in files.subfolders(os.path.join(path, alphabet)):
            images_of[f"{alphabet}/{character}"] = files.images_in(
                os.path.join(path, alphabet, character)
            )
    return files.decode_classes(
        images_of, image_size, 1, f"{path}/<alphabet>/<character>/*.png"
    )


def _omniglot_tfds(data_dir, split, image_size):
    """One split of tfds-prepared Omniglot, converted to greyscale."""
    dataset, info = tfds.load(
        "omniglot",
        split=split,
        data_dir=data_dir,
        download=False,
        with_info=True,
    )
    alphabets = info.features["alphabet"].names
    parts = files.batches(
        dataset.map(
            lambda x: (
                files.to_float(
                    tf.image.rgb_to_grayscale(x["image"]), image_size
                ),
                x["alphabet"],
                x["alphabet_char_id"],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        ),
        f"tfds Omniglot ({split})",
    )
    images, alphabet, char = (np.concatenate(p) for p in zip(*parts))
    names = [
        f"{alphabets[a]}/character{c + 1:02d}" for a, c in zip(alphabet, char)
    ]
    return files.grouped(images, names)

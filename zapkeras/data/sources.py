"""Labelled image classes in memory, loaded from local files only.

`load_class_sets` gives two disjoint sets of classes: one to pretrain on and
one to transfer to. Sources: the embedded glyph dataset, Omniglot (original
archives, extracted folders or tfds-prepared), any class-per-folder image
directory, or a tfds-prepared dataset. Nothing is ever downloaded; missing
data fails with the paths searched and how to get the data.
"""

import dataclasses
import os
import zipfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import gin
from zapkeras.errors import UsageError

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_OMNIGLOT_SETS = ("images_background", "images_evaluation")
_OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/tree/master/python"


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


@gin.configurable
def load_class_sets(
    name,
    data_dir,
    *,
    image_size=28,
    pretrain_classes=None,
    seed=0,
    pretrain_fraction=0.6,
    normalize=None,
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
    if image_size < 1:
        raise UsageError(
            f"IMAGE_SIZE (load_class_sets.image_size) = {image_size}; "
            "use a positive number of pixels, e.g. 28."
        )
    if name == "embedded":
        from zapkeras.data import embedded  # it builds on this module

        sets = embedded.glyph_class_sets(image_size=image_size)
    else:
        if not data_dir:
            raise UsageError(
                f"Dataset '{name}' is read from files but no data directory "
                "was given; pass --data_dir or set $ZAPKERAS_DATA_DIR."
            )
        data_dir = os.path.expanduser(data_dir)
        if name == "omniglot":
            sets = _omniglot(data_dir, image_size)
        else:
            sets = _split_folders(name, data_dir, image_size)
            if sets is None:
                pool = folder_or_tfds(name, data_dir, image_size)
                sets = _split_pool(pool, pretrain_fraction)
    if normalize is not None:
        sets = ClassSets(
            pretrain=_normalized(sets.pretrain, normalize),
            transfer=_normalized(sets.transfer, normalize),
        )
    if pretrain_classes is None:
        return sets
    available = sets.pretrain.num_classes
    if not 1 <= pretrain_classes <= available:
        raise UsageError(
            f"PRETRAIN_CLASSES (load_class_sets.pretrain_classes) = "
            f"{pretrain_classes} but '{name}' has {available} pretraining "
            f"classes; choose 1..{available}, or None for all."
        )
    chosen = np.random.default_rng(seed).choice(
        available, pretrain_classes, replace=False
    )
    return ClassSets(
        pretrain=sets.pretrain.subset_classes(np.sort(chosen)),
        transfer=sets.transfer,
    )


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


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


def _omniglot(data_dir, image_size):
    """Background classes pretrain, evaluation classes transfer."""
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
            files = {}
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
                    files.setdefault("/".join(parts[1:]), [])
                elif len(parts) == 4 and member.endswith(".png"):
                    files.setdefault("/".join(parts[1:3]), []).append(member)
            blobs = {
                name: [archive.read(m) for m in members]
                for name, members in files.items()
            }
    except zipfile.BadZipFile as error:
        raise UsageError(
            f"Omniglot: {path} is not a readable zip archive ({error}); "
            f"download it again from {_OMNIGLOT_URL}."
        ) from error
    for name, members in files.items():
        if not members:
            raise UsageError(
                f"Omniglot: class folder {path}:{name}/ has no .png images; "
                f"download {os.path.basename(path)} again from "
                f"{_OMNIGLOT_URL}."
            )
    paths = {
        name: [f"{path}:{m}" for m in members]
        for name, members in files.items()
    }
    layout = f"{path}:<set>/<alphabet>/<character>/*.png"
    return _decode_classes(paths, image_size, 1, layout, blobs=blobs)


def _omniglot_folder(path, image_size):
    """Classes of one extracted Omniglot set, `alphabet/character/*.png`."""
    files = {}
    for alphabet in _subfolders(path):
        for character in _subfolders(os.path.join(path, alphabet)):
            files[f"{alphabet}/{character}"] = _images_in(
                os.path.join(path, alphabet, character)
            )
    return _decode_classes(
        files, image_size, 1, f"{path}/<alphabet>/<character>/*.png"
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
    parts = tfds.as_numpy(
        dataset.map(
            lambda x: (
                to_float(tf.image.rgb_to_grayscale(x["image"]), image_size),
                x["alphabet"],
                x["alphabet_char_id"],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).batch(1024)
    )
    images, alphabet, char = (np.concatenate(p) for p in zip(*parts))
    names = [
        f"{alphabets[a]}/character{c + 1:02d}" for a, c in zip(alphabet, char)
    ]
    return _grouped(images, names)


def folder_or_tfds(name, data_dir, image_size):
    """The class pool of a class-per-folder directory, else of tfds `name`."""
    folder = os.path.join(data_dir, name)
    tfds_info = os.path.join(folder, "*", "dataset_info.json")
    if tf.io.gfile.isdir(folder) and not tf.io.gfile.glob(tfds_info):
        return _class_folders(folder, image_size)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except ValueError:  # not a tfds name
        builder = None
    if builder is None or not builder.is_prepared():
        searched = f"{folder}/<class>/ (class-per-folder images)"
        how = f"Put each class's images in {folder}/<class>/*.png|jpg|jpeg"
        if builder is None:
            how += f", or use a tfds dataset name ('{name}' is not one)."
        else:
            searched += f" and {builder.data_dir} (tfds-prepared)"
            how += (
                ", or prepare the tfds dataset on a machine with internet "
                f"(`tfds build {name} --data_dir=DIR`) and copy DIR/{name}/ "
                f"to {folder}/."
            )
        raise UsageError(
            f"Dataset '{name}' not found. Searched: {searched}. {how}"
        )
    return _tfds_pool(name, builder, data_dir, image_size)


def _class_folders(folder, image_size):
    """LabeledImages of `folder/<class>/*.png|jpg|jpeg`."""
    files = {
        label: _images_in(os.path.join(folder, label))
        for label in _subfolders(folder)
    }
    layout = f"{folder}/<class>/*.png|jpg|jpeg"
    return _decode_classes(files, image_size, None, layout)


def _split_folders(name, data_dir, image_size):
    """ClassSets of `NAME/train/<class>/` (pretraining) and
    `NAME/test/<class>/` (transfer), the fixed class splits of
    Mini-ImageNet (Ravi & Larochelle: 64 train, 20 test classes) and
    Omni-image (700 / 300); None when `NAME` has no such layout."""
    folder = os.path.join(data_dir, name)
    train, test = (os.path.join(folder, split) for split in ("train", "test"))
    if not (tf.io.gfile.isdir(train) and tf.io.gfile.isdir(test)):
        return None
    return ClassSets(
        pretrain=_class_folders(train, image_size),
        transfer=_class_folders(test, image_size),
    )


def _tfds_pool(name, builder, data_dir, image_size):
    """All splits of a prepared tfds image classification dataset."""
    image, label = builder.info.supervised_keys or ("image", "label")
    features = builder.info.features
    if image not in features or not isinstance(
        features[label] if label in features else None,
        tfds.features.ClassLabel,
    ):
        raise UsageError(
            f"tfds dataset '{name}' has no image and class-label features "
            f"('{image}', '{label}'); set load_class_sets.name to an image "
            "classification dataset."
        )
    dataset = tfds.load(
        name,
        split="+".join(sorted(builder.info.splits)),
        data_dir=data_dir,
        download=False,
    )
    parts = tfds.as_numpy(
        dataset.map(
            lambda x: (to_float(x[image], image_size), x[label]),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).batch(1024)
    )
    images, labels = (np.concatenate(p) for p in zip(*parts))
    return _grouped(images, np.array(features[label].names)[labels])


def _subfolders(path):
    """Sorted visible subdirectories of `path`."""
    return sorted(
        entry.rstrip("/")
        for entry in tf.io.gfile.listdir(path)
        if not entry.startswith(".")
        and tf.io.gfile.isdir(os.path.join(path, entry))
    )


def _images_in(folder):
    """Sorted image files of one class folder; an empty class is an error."""
    files = sorted(
        os.path.join(folder, entry)
        for entry in tf.io.gfile.listdir(folder)
        if entry.lower().endswith(_IMAGE_EXTENSIONS)
    )
    if not files:
        raise UsageError(
            f"Class folder {folder} has no .png/.jpg/.jpeg images; add its "
            "images or remove the folder."
        )
    return files


def _decode_classes(files, image_size, channels, layout, blobs=None):
    """Decodes {class name: [file]} into LabeledImages, classes sorted by
    name, in a parallel tf.data map.

    `blobs` holds the encoded bytes when they are not read from `files`
    (zip members). `channels=None` takes 1 or 3 from the first image.
    """
    if not files:
        raise UsageError(
            f"No classes found: expected images as {layout}; put the data "
            "in that layout."
        )
    names = sorted(files)
    paths = [p for name in names for p in files[name]]
    labels = np.repeat(np.arange(len(names)), [len(files[n]) for n in names])
    if blobs is None:
        data = tf.data.Dataset.from_tensor_slices(paths).map(tf.io.read_file)
    else:
        data = tf.data.Dataset.from_tensor_slices(
            [b for name in names for b in blobs[name]]
        )
    if channels is None:
        try:
            first = _decode(next(iter(data)), 0)
        except tf.errors.OpError as error:
            raise _undecodable(paths[0]) from error
        channels = 1 if first.shape[-1] < 3 else 3
    # Unreadable images are skipped here and reported by name below.
    decoded = (
        tf.data.Dataset.zip(tf.data.Dataset.range(len(paths)), data)
        .map(
            lambda i, x: (i, to_float(_decode(x, channels), image_size)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .ignore_errors()
        .batch(1024)
    )
    parts = list(tfds.as_numpy(decoded))
    index = np.concatenate([p[0] for p in parts]) if parts else []
    if len(index) < len(paths):
        raise _undecodable(paths[np.setdiff1d(np.arange(len(paths)), index)[0]])
    return LabeledImages(
        images=np.concatenate([p[1] for p in parts]),
        labels=labels.astype(np.int32),
        class_names=tuple(names),
    )


def _undecodable(path):
    return UsageError(
        f"Cannot read image {path}: it is corrupt or not a PNG/JPEG image; "
        "replace or delete the file."
    )


def _decode(data, channels):
    return tf.io.decode_image(data, channels=channels, expand_animations=False)


def to_float(image, image_size):
    """[0, 1] float32 at image_size² (Lanczos-3, antialiased, clipped)."""
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.image.resize(
        image, (image_size, image_size), method="lanczos3", antialias=True
    )
    return tf.clip_by_value(image, 0.0, 1.0)


def _grouped(images, class_of_image):
    """LabeledImages with classes sorted by name."""
    names, labels = np.unique(np.asarray(class_of_image), return_inverse=True)
    return LabeledImages(
        images=images,
        labels=labels.astype(np.int32),
        class_names=tuple(str(n) for n in names),
    )

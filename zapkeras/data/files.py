"""Datasets read by name from the data directory: class-per-folder images
and prepared tfds datasets, with the image decoding Omniglot shares.

This module registers the fallback loader (zapkeras.data.registry): any
name not registered is `DATA_DIR/NAME/train|test/<class>/` (fixed class
splits), else `DATA_DIR/NAME/<class>/` or a tfds dataset prepared under
DATA_DIR. Nothing is ever downloaded; missing data fails with the paths
searched and how to get the data.
"""

import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from zapkeras.data import registry
from zapkeras.data.types import ClassSets
from zapkeras.data.types import LabeledImages
from zapkeras.errors import UsageError

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def default_data_dir():
    """--data_dir when none is given: $ZAPKERAS_DATA_DIR, else
    ~/tensorflow_datasets."""
    return os.environ.get("ZAPKERAS_DATA_DIR") or os.path.expanduser(
        "~/tensorflow_datasets"
    )


def data_root(name, data_dir):
    """`data_dir` with ~ expanded; a UsageError when none was given."""
    if not data_dir:
        raise UsageError(
            f"Dataset '{name}' is read from files but no data directory "
            "was given; pass --data_dir or set $ZAPKERAS_DATA_DIR."
        )
    return os.path.expanduser(data_dir)


def check_data_dir(data_dir):
    """A UsageError unless `data_dir` is None, empty or a path."""
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise UsageError(
            f"--data_dir = {data_dir!r} (a {type(data_dir).__name__}); use "
            "a directory path, e.g. '~/tensorflow_datasets'."
        )


@registry.register_fallback
def load_files(name, data_dir, image_size):
    """ClassSets of `NAME/train|test/` class folders, else the class pool of
    a class-per-folder directory or prepared tfds dataset `name`."""
    data_dir = data_root(name, data_dir)
    sets = _split_folders(name, data_dir, image_size)
    if sets is None:
        return folder_or_tfds(name, data_dir, image_size)
    return sets


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
            how += f", or use a tfds dataset name ('{name}' is not one)"
        else:
            searched += f" and {builder.data_dir} (tfds-prepared)"
            how += (
                ", or prepare the tfds dataset on a machine with internet "
                f"(`tfds build {name} --data_dir=DIR`) and copy DIR/{name}/ "
                f"to {folder}/"
            )
        known = ", ".join(repr(n) for n in registry.names())
        raise UsageError(
            f"Dataset '{name}' not found. Searched: {searched}. {how}. "
            f"Datasets known by name: {known}."
        )
    return _tfds_pool(name, builder, data_dir, image_size)


def _class_folders(folder, image_size):
    """LabeledImages of `folder/<class>/*.png|jpg|jpeg`."""
    files = {
        label: images_in(os.path.join(folder, label))
        for label in subfolders(folder)
    }
    layout = f"{folder}/<class>/*.png|jpg|jpeg"
    return decode_classes(files, image_size, None, layout)


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
    parts = batches(
        dataset.map(
            lambda x: (to_float(x[image], image_size), x[label]),
            num_parallel_calls=tf.data.AUTOTUNE,
        ),
        f"tfds dataset '{name}'",
    )
    images, labels = (np.concatenate(p) for p in zip(*parts))
    return grouped(images, np.array(features[label].names)[labels])


def subfolders(path):
    """Sorted visible subdirectories of `path`."""
    return sorted(
        entry.rstrip("/")
        for entry in tf.io.gfile.listdir(path)
        if not entry.startswith(".")
        and tf.io.gfile.isdir(os.path.join(path, entry))
    )


def images_in(folder):
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


def decode_classes(files, image_size, channels, layout, blobs=None):
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
    )
    parts = batches(decoded, layout)
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
    """[0, 1] float32 at image_size² (Lanczos-3, antialiased, clipped);
    `image_size=None` keeps the image's own size."""
    image = tf.image.convert_image_dtype(image, tf.float32)
    if image_size is None:
        return image
    image = tf.image.resize(
        image, (image_size, image_size), method="lanczos3", antialias=True
    )
    return tf.clip_by_value(image, 0.0, 1.0)


def resize(images, image_size):
    """NumPy `images` (N, H, W[, C]) in [0, 1] at image_size², as `to_float`
    resizes, in batches."""
    flat = images.ndim == 3
    data = tf.data.Dataset.from_tensor_slices(
        images[..., None] if flat else images
    ).map(lambda x: to_float(x, image_size))
    out = np.concatenate([b for b in tfds.as_numpy(data.batch(1024))])
    return out[..., 0] if flat else out


class MixedSizes(UsageError):
    """Images kept at their own sizes are not all one size."""


def batches(dataset, where):
    """The batches of `dataset` as NumPy tuples; `MixedSizes` naming
    `where` when images kept at their own sizes differ."""
    try:
        return list(tfds.as_numpy(dataset.batch(1024)))
    except tf.errors.InvalidArgumentError as error:
        if "shape" not in str(error).lower():
            raise
        raise MixedSizes(
            f"The images of {where} are not all one size; set "
            "continual_dataset.image_size to resize them to one, e.g. 28."
        ) from None


def grouped(images, class_of_image):
    """LabeledImages with classes sorted by name."""
    names, labels = np.unique(np.asarray(class_of_image), return_inverse=True)
    return LabeledImages(
        images=images,
        labels=labels.astype(np.int32),
        class_names=tuple(str(n) for n in names),
    )

"""Training-time image augmentation of the reference repos.

lee2024 App. A.4 ("horizontal flipping and random cropping with 4-pixel
padding"; H&T: torchvision RandomCrop(size, padding=4) → zero padding, then
RandomHorizontalFlip) and hernandez-garcia2025's ViT
(docs/reference_codes.md §2.3: flip, RandomCrop(32, padding=4,
padding_mode="reflect"), rotation by 0–15°).

Every image draws its own crop offset in [0, 2·padding] on each axis, its
own flip (p = 0.5) and its own angle, as torchvision does per example
(Keras' RandomCrop draws one offset per batch, so it is not used). Crop
and flip commute in distribution, so the order flip/crop of the SWR repo
and crop/flip of H&T give the same distribution. Padding and rotation
fill with 0 in the input's units: H&T pads before normalising (black),
the SWR repo after (the mean colour).
"""

import keras
import numpy as np
import tensorflow as tf

import gin
from zapkeras import settings

KINDS = ("crop_flip", "none")
PADDING_MODES = {"zeros": "CONSTANT", "reflect": "REFLECT"}
_PADDING_MODE = settings.OneOf(
    *PADDING_MODES, hint="use 'zeros' (H&T) or 'reflect' (the SWR ViT)."
)
_ROTATION = settings.Number(
    low=0, high=180, example=15, note="It is the largest angle in degrees."
)
_SEED = settings.Seed(none_means="Keras' global seed generator")


@keras.saving.register_keras_serializable(package="zapkeras")
class RandomPadCrop(keras.layers.Layer):
    """torchvision's RandomCrop(size, padding): pad, crop back, per image.

    Pads `padding` pixels on every side ('zeros', or 'reflect' as
    numpy/torch reflect without repeating the edge), then cuts the original
    size at an offset drawn uniformly from {0, …, 2·padding} per axis and
    per image. Works on [H, W, C] or [B, H, W, C]; identity when not
    training. Draws come from the layer's own SeedGenerator.
    """

    def __init__(self, padding=4, padding_mode="zeros", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = padding
        self.padding_mode = padding_mode
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or not self.padding:
            return images
        single = len(images.shape) == 3
        if single:
            images = images[None]
        p = self.padding
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        padded = tf.pad(
            images,
            [[0, 0], [p, p], [p, p], [0, 0]],
            mode=PADDING_MODES[self.padding_mode],
        )
        batch = tf.shape(images)[0]
        offsets = keras.random.randint(
            (batch, 2), 0, 2 * p + 1, seed=self.seed_generator
        )
        rows = offsets[:, :1] + tf.range(height)[None]
        cols = offsets[:, 1:] + tf.range(width)[None]
        out = tf.gather(padded, rows, axis=1, batch_dims=1)
        out = tf.gather(out, cols, axis=2, batch_dims=1)
        return out[0] if single else out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "padding": self.padding,
            "padding_mode": self.padding_mode,
            "seed": self.seed,
        }


@gin.configurable
@settings.declared("augmentation")
def augmentation(
    kind: settings.OneOf(*KINDS) = "crop_flip",
    *,
    padding: settings.NonNegativeInt = 4,
    padding_mode: _PADDING_MODE = "zeros",
    rotation: _ROTATION = 0.0,
    seed: _SEED = None,
):
    """A Keras preprocessing stage for `ds.map(stage)` or a model's input.

    Args:
      kind: 'crop_flip' (random crop with padding, then horizontal flip,
        then the optional rotation) or 'none' (identity).
      padding: pixels added on every side before the crop (reference 4).
      padding_mode: 'zeros' (H&T, torchvision's default) or 'reflect'
        (the SWR ViT).
      rotation: maximum angle in degrees; each image turns counter-clockwise
        by U(0, rotation) (SWR: RandomRotator(degrees=(0, 15))), nearest
        neighbour, zero fill, as torchvision's RandomRotation.
      seed: an int fixes every draw; None draws the seeds from Keras'
        global generator (keras.utils.set_random_seed).

    Returns a `keras.layers.Pipeline` (an Identity layer for 'none') for
    a batch or one image, identity when called with training=False. Its
    draws come from SeedGenerators it owns, which advance once per call:
    the same seed gives the same augmented stream when calls come in the
    same order, so map it without `num_parallel_calls`. Their states are
    `stage.variables`; a `tf.train.Checkpoint` of `[v.value for v in
    stage.variables]` resumes the stream exactly (the Pipeline itself is
    not tracked by tf.train.Checkpoint).
    """
    if kind == "none":
        return keras.layers.Identity(name="augmentation")
    seeds = [None] * 3
    if seed is not None:
        seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(3)]
    stages = [
        RandomPadCrop(padding, padding_mode, seed=seeds[0], name="crop"),
        keras.layers.RandomFlip("horizontal", seed=seeds[1], name="flip"),
    ]
    if rotation:
        stages.append(
            keras.layers.RandomRotation(
                (0.0, rotation / 360.0),
                fill_mode="constant",
                interpolation="nearest",
                fill_value=0.0,
                seed=seeds[2],
                name="rotation",
            )
        )
    return keras.layers.Pipeline(stages, name="augmentation")

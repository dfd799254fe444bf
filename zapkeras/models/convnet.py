"""frati2024's "small convnet" (§2; docs/reference_codes.md §1.5).

Blocks of conv 3×3 (stride 1) → InstanceNorm (affine) → ReLU → max-pool 2,
then a linear classifier on the flattened features:

- 28 px (Omniglot): 3 blocks, 'valid' padding, pools after blocks 0 and 1
  only: 28→26→13→11→5→3, so 3·3·width features (2304 at width 256);
- 84 px (Mini-ImageNet, Omni-image): 4 blocks, 'same' padding, a pool after
  each: 84→42→21→10→5, so 5·5·width features (6400 at width 256).
"""

import keras

import gin
from zapkeras import settings
from zapkeras.models import layers

# image size -> (padding, whether each block ends with a max-pool)
_LAYOUTS = {
    28: ("valid", (True, True, False)),
    84: ("same", (True, True, True, True)),
}
_IMAGE_SIZE = settings.OneOf(
    *_LAYOUTS,
    hint="frati_convnet supports 28 (Omniglot) or 84 (Mini-ImageNet, "
    "Omni-image) pixels.",
)


@gin.configurable
@settings.declared("frati_convnet")
def frati_convnet(
    num_classes: settings.PositiveInt(example=964),
    *,
    image_size: _IMAGE_SIZE = 28,
    channels: settings.PositiveInt = 1,
    width: settings.PositiveInt = 256,
    init: layers.Init = "reference",
):
    """Builds the small convnet on float32 [B, S, S, channels] images.

    init="reference" reproduces the PyTorch init of the paper's code: conv
    kernels Kaiming-normal (std √(2/fan_in)), conv biases and the classifier
    U(±1/√fan_in); init="keras" keeps Keras' defaults (Glorot, zero bias).
    Layers are named conv<i>, norm<i>, relu<i>, pool<i>, `features` (the
    flattened output) and `classifier` (the logits).
    """
    padding, pools = _LAYOUTS[image_size]
    inputs = keras.Input((image_size, image_size, channels), name="images")
    x = conv_blocks(inputs, width, pools, padding=padding, init=init)
    outputs = layers.dense(num_classes, x.shape[-1], init, "classifier")(x)
    return keras.Model(inputs, outputs, name="frati_convnet")


def conv_blocks(
    x, width, pools, *, padding="valid", init="reference", prefix=""
):
    """Blocks conv 3×3 → InstanceNorm → ReLU → [max-pool 2], flattened.

    Layers are named {prefix}conv<i>, norm<i>, relu<i>, pool<i> and the
    flattened output {prefix}features. init="reference": conv kernels
    Kaiming-normal, biases U(±1/√fan_in), as the reference code.
    """
    for i, pool in enumerate(pools):
        x = keras.layers.Conv2D(
            width,
            3,
            padding=padding,
            name=f"{prefix}conv{i}",
            **conv_init(init, x.shape[-1]),
        )(x)
        x = layers.InstanceNorm(name=f"{prefix}norm{i}")(x)
        x = keras.layers.ReLU(name=f"{prefix}relu{i}")(x)
        if pool:
            x = keras.layers.MaxPooling2D(2, name=f"{prefix}pool{i}")(x)
    return keras.layers.Flatten(name=f"{prefix}features")(x)


def conv_init(init, in_channels):
    """Initializers of a 3×3 conv: under init="reference" the reference
    code's Kaiming-normal kernel and U(±1/√fan_in) bias; else Keras'."""
    if init != "reference":
        return {}
    return {
        "kernel_initializer": layers.kaiming_normal(),
        "bias_initializer": layers.torch_uniform(9 * in_channels),
    }

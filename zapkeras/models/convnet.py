"""frati2024's "small convnet" (§2; reference-implementations.md §1.5).

Blocks of conv 3×3 (stride 1) → InstanceNorm (affine) → ReLU → max-pool 2,
then a linear classifier on the flattened features:

- 28 px (Omniglot): 3 blocks, 'valid' padding, pools after blocks 0 and 1
  only: 28→26→13→11→5→3, so 3·3·width features (2304 at width 256);
- 84 px (Mini-ImageNet, Omni-image): 4 blocks, 'same' padding, a pool after
  each: 84→42→21→10→5, so 5·5·width features (6400 at width 256).
"""

import math

import gin
import keras

from zapkeras.errors import UsageError
from zapkeras.models import layers

# image size -> (padding, whether each block ends with a max-pool)
_LAYOUTS = {
    28: ("valid", (True, True, False)),
    84: ("same", (True, True, True, True)),
}


@gin.configurable
def frati_convnet(
    num_classes, *, image_size=28, channels=1, width=256, init="reference"
):
    """Builds the small convnet on float32 [B, S, S, channels] images.

    init="reference" reproduces the PyTorch init of the paper's code: conv
    kernels Kaiming-normal (std √(2/fan_in)), conv biases and the classifier
    U(±1/√fan_in); init="keras" keeps Keras' defaults (Glorot, zero bias).
    Layers are named conv<i>, norm<i>, relu<i>, pool<i>, `features` (the
    flattened output) and `classifier` (the logits).
    """
    if image_size not in _LAYOUTS:
        raise UsageError(
            f"IMAGE_SIZE = {image_size!r}; frati_convnet supports 28 "
            "(Omniglot) or 84 (Mini-ImageNet, Omni-image) pixels."
        )
    if width < 1 or num_classes < 1:
        raise UsageError(
            f"WIDTH = {width!r}, num_classes = {num_classes!r}; both must be "
            "positive integers."
        )
    layers.check_init(init, "frati_convnet.init")
    reference = init == "reference"
    padding, pools = _LAYOUTS[image_size]
    inputs = keras.Input((image_size, image_size, channels), name="images")
    x = inputs
    for i, pool in enumerate(pools):
        conv_args = {}
        if reference:
            conv_args = {
                "kernel_initializer": layers.kaiming_normal(),
                "bias_initializer": layers.torch_uniform(9 * x.shape[-1]),
            }
        x = keras.layers.Conv2D(
            width, 3, padding=padding, name=f"conv{i}", **conv_args
        )(x)
        x = layers.InstanceNorm(name=f"norm{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if pool:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="features")(x)
    head_args = {}
    if reference:
        fan_in = math.prod(x.shape[1:])
        head_args = {
            "kernel_initializer": layers.torch_uniform(fan_in),
            "bias_initializer": layers.torch_uniform(fan_in),
        }
    outputs = keras.layers.Dense(num_classes, name="classifier", **head_args)(x)
    return keras.Model(inputs, outputs, name="frati_convnet")

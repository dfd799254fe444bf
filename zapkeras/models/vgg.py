"""VGG-16 (Simonyan & Zisserman 2014) with BatchNorm, two reference heads.

The feature stack is torchvision's `vgg16_bn` features, identical to the
H&T repo's VGG-16: 13 conv3×3 (padding 1, with bias) → BN → ReLU in five
groups of (2, 2, 3, 3, 3) convs of (64, 128, 256, 512, 512) channels, each
group ending in a 2×2 max-pool.

- style="frati" (frati2024 §5, docs/reference_codes.md §1.5):
  torchvision's AdaptiveAvgPool2d((7, 7)) → flatten (7·7·512 = 25 088
  features at any input size; at 84 px the 2×2 map is upsampled) → the
  classifier, no hidden layers.
- style="cifar" (lee2024 / H&T, docs/reference_codes.md §3.4): flatten
  the last map (1·1·512 at 32 px, 2·2·512 = 2048 at Tiny-ImageNet's 64 px)
  → Dense(1024) → ReLU → Dense(1024) → ReLU → classifier.

init="reference" follows each reference: "frati" keeps torchvision's VGG
init of the features (conv kernels Kaiming-normal fan_out, std
√(2/(9·out)), zero biases) and PyTorch's default for its own classifier
U(±1/√fan_in) (assumed: the frati code adds a plain nn.Linear); "cifar"
keeps PyTorch's defaults everywhere (H&T sets no init): U(±1/√fan_in)
for conv and Dense weights and biases. BN γ = 1, β = 0, PyTorch momentum
and eps in both.
"""

import keras

import gin
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.models import layers

STYLES = ("frati", "cifar")
GROUPS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
_DEFAULT_HIDDEN = {"frati": (), "cifar": (1024, 1024)}
_STYLE = settings.OneOf(
    *STYLES,
    hint="use 'frati' (adaptive 7×7 pool, frati2024) or 'cifar' "
    "(flatten + MLP head, lee2024).",
)


def _conv_kwargs(style, init, fan_in):
    if init == "keras":
        return {}
    if style == "cifar":
        return layers.torch_default(fan_in)
    return {
        "kernel_initializer": keras.initializers.VarianceScaling(
            scale=2.0, mode="fan_out", distribution="untruncated_normal"
        ),
        "bias_initializer": "zeros",
    }


@gin.configurable
@settings.declared("vgg16")
def vgg16(
    num_classes: settings.PositiveInt(example=100),
    *,
    input_shape: settings.PositiveInts(length=3) = (84, 84, 3),
    batch_norm: settings.Bool = True,
    style: _STYLE = "frati",
    hidden: settings.Maybe(settings.PositiveInts(example=(1024,))) = None,
    head_activation="relu",
    init: layers.Init = "reference",
):
    """Builds VGG-16 on float32 [B, H, W, C] images.

    Args:
      num_classes: logits of the `classifier` Dense layer.
      input_shape: (H, W, C); H and W at least 32 (five 2×2 pools).
      batch_norm: BN after every conv (vgg16_bn); False gives plain vgg16.
      style: 'frati' (adaptive 7×7 average pool, 25 088 features) or
        'cifar' (flatten the last map, H&T).
      hidden: head hidden widths; None = the style's reference, () for
        frati and (1024, 1024) for cifar.
      head_activation: 'relu' or 'crelu' for the hidden layers (lee2024's
        CReLU baseline halves each hidden layer's units, see `layers`).
      init: 'reference' (see the module doc) or 'keras' (Keras defaults).

    Layers: conv<g>_<i>, bn<g>_<i>, relu<g>_<i> (g = 0..4, i within the
    group), pool<g>; `adaptive_pool` (frati); `features` (the flattened
    map); head_dense<k>, head_act<k>; `classifier`.
    """
    if min(input_shape[:2]) < 32:
        raise UsageError(
            f"vgg16.input_shape = {input_shape}; VGG-16 halves the "
            "image five times, so height and width must be at least 32."
        )
    hidden = _DEFAULT_HIDDEN[style] if hidden is None else hidden
    hidden_units = [
        layers.units_before(head_activation, width, "vgg16.hidden")
        for width in hidden
    ]
    inputs = keras.Input(tuple(input_shape), name="images")
    x = inputs
    for g, (filters, count) in enumerate(GROUPS):
        for i in range(count):
            kwargs = _conv_kwargs(style, init, 9 * x.shape[-1])
            x = keras.layers.Conv2D(
                filters, 3, padding="same", name=f"conv{g}_{i}", **kwargs
            )(x)
            if batch_norm:
                x = layers.batch_norm(f"bn{g}_{i}")(x)
            x = keras.layers.ReLU(name=f"relu{g}_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{g}")(x)
    if style == "frati":
        x = keras.layers.AdaptiveAveragePooling2D(7, name="adaptive_pool")(x)
    x = keras.layers.Flatten(name="features")(x)
    for k, units in enumerate(hidden_units):
        x = layers.dense(units, x.shape[-1], init, f"head_dense{k}")(x)
        x = layers.activation(head_activation, f"head_act{k}")(x)
    outputs = layers.dense(num_classes, x.shape[-1], init, "classifier")(x)
    return keras.Model(inputs, outputs, name="vgg16")

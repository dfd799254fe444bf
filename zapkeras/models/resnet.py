"""CIFAR-style ResNet-18 with scalable width and depth.

He et al. (2016) BasicBlocks as in the Hare & Tortoise repo (lee2024,
docs/reference_codes.md §3.4; kuangliu/pytorch-cifar layout): a 3×3
stride-1 stem with no max-pool, four stages of `blocks[i]` BasicBlocks
(conv3×3 → BN → ReLU → conv3×3 → BN, + shortcut, → ReLU) with
width·(1, 2, 4, 8) channels, stride 2 at the start of stages 1–3, a 1×1
conv + BN projection shortcut wherever the shape changes, then global
average pooling. berariu2021 §A.4 (Fig. 5) scales it by multiplying every
stage's channels (`width`) and setting the blocks per stage (`blocks`).

Heads: "linear" (pooled features → classifier) or "gap_mlp", H&T's "gap"
head: Dense(8·width) → ReLU → classifier (Linear(512, 512) → ReLU → Linear
at width 64).

BatchNorm keeps PyTorch's settings (momentum 0.1, i.e. Keras momentum 0.9;
eps 1e-5). A stride-2 3×3 conv pads one pixel on every side, as PyTorch's
padding=1 does (Keras' 'same' would pad only bottom/right on even maps).
"""

import keras

import gin
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.models import layers

HEADS = ("linear", "gap_mlp")
_HEAD = settings.OneOf(*HEADS, hint="use 'linear' or 'gap_mlp' (H&T).")
_BLOCKS = settings.PositiveInts(
    length=4, note="They are the BasicBlocks of each stage."
)


def _conv(x, filters, kernel, stride, init, name):
    """A bias-free conv of `x`; a 3×3 stride-2 conv pads 1 on every side."""
    kwargs = {}
    if init == "reference":
        fan_in = kernel * kernel * x.shape[-1]
        kwargs = layers.torch_default(fan_in, use_bias=False)
    padding = "same"
    if stride != 1:
        padding = "valid"
        if kernel > 1:
            x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        use_bias=False,
        name=name,
        **kwargs,
    )(x)


def _subsample(x, stride, name):
    """Every `stride`-th pixel of `x`, ahead of the 1×1 projection shortcut.

    Subsampling then a stride-1 1×1 conv is the same function, with the same
    kernel, as PyTorch's stride-s 1×1 conv (it reads only those pixels).
    The strided conv is avoided because oneDNN 3.7 (TF 2.21,
    TF_ENABLE_ONEDNN_OPTS=1) computes its weight gradient through a
    workspace that it overruns when the input has fewer channels than its
    channel block, 8 on AVX2 and 16 on AVX-512 (oneDNN issue 6035): the
    heap corruption of the narrow warm-start ResNets.
    """
    return keras.layers.MaxPooling2D(1, strides=stride, name=name)(x)


def _basic_block(x, filters, stride, init, prefix):
    """One BasicBlock; layers named <prefix>_conv1, _bn1, _relu1, _conv2,
    _bn2, [[_subsample,] _shortcut, _shortcut_bn], _add, _relu2."""
    y = _conv(x, filters, 3, stride, init, f"{prefix}_conv1")
    y = layers.batch_norm(f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(y, filters, 3, 1, init, f"{prefix}_conv2")
    y = layers.batch_norm(f"{prefix}_bn2")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        if stride != 1:
            shortcut = _subsample(shortcut, stride, f"{prefix}_subsample")
        shortcut = _conv(shortcut, filters, 1, 1, init, f"{prefix}_shortcut")
        shortcut = layers.batch_norm(f"{prefix}_shortcut_bn")(shortcut)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_relu2")(y)


@gin.configurable
@settings.declared("resnet18")
def resnet18(
    num_classes: settings.PositiveInt(example=100),
    *,
    input_shape: settings.PositiveInts(length=3) = (32, 32, 3),
    width: settings.PositiveInt = 64,
    blocks: _BLOCKS = (2, 2, 2, 2),
    head: _HEAD = "linear",
    head_activation="relu",
    init: layers.Init = "reference",
):
    """Builds the CIFAR ResNet on float32 [B, H, W, C] images.

    Args:
      num_classes: logits of the `classifier` Dense layer.
      input_shape: (H, W, C) of the images.
      width: channels of the stem and stage 0; stage i has width·2^i.
      blocks: BasicBlocks per stage (four stages; berariu2021 varies all).
      head: 'linear' or 'gap_mlp' (H&T: Dense(8·width) → act → classifier).
      head_activation: the gap_mlp hidden activation, 'relu' or 'crelu'
        (lee2024's CReLU baseline: 4·width units, CReLU → 8·width).
      init: 'reference' = PyTorch's defaults, as the H&T code leaves them:
        convs and Dense U(±1/√fan_in) (biases too; the convs have none),
        BN γ = 1, β = 0. 'keras' = Keras' defaults (Glorot, zero bias).

    Layers: stem_conv, stem_bn, stem_relu; stage<i>_block<j>_conv1 … (see
    `_basic_block`; 0-based, projection shortcuts end in `_shortcut`);
    `pool` (global average); head_dense, head_act; `classifier`.
    """
    if head == "linear" and head_activation != "relu":
        raise UsageError(
            f"resnet18.head_activation = {head_activation!r} with the linear "
            "head, which has no hidden layer; use head='gap_mlp'."
        )
    inputs = keras.Input(tuple(input_shape), name="images")
    x = _conv(inputs, width, 3, 1, init, "stem_conv")
    x = layers.batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, count in enumerate(blocks):
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(
                x, width * 2**stage, stride, init, f"stage{stage}_block{block}"
            )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if head == "gap_mlp":
        units = layers.units_before(
            head_activation, 8 * width, "resnet18.width"
        )
        x = layers.dense(units, x.shape[-1], init, "head_dense")(x)
        x = layers.activation(head_activation, "head_act")(x)
    outputs = layers.dense(num_classes, x.shape[-1], init, "classifier")(x)
    return keras.Model(inputs, outputs, name="resnet18")

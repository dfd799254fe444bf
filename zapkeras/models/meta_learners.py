"""The meta-learning baselines frati2024 compares against (§3.1, Figs. 2–3).

- ANML (Beaulieu et al. 2020): a representation network (RLN, frati's
  small convnet body) whose flattened features are gated elementwise by a
  neuromodulatory network (NM: its own conv blocks, ending with a pool, a
  Dense to the feature size and a sigmoid), then the classifier. Its
  meta-training is Meta-ASB with the inner loop on the RLN and classifier
  only; the NM learns in the outer loop alone
  (docs/reference_codes.md §1.3, `train-omni-anml.yml`).
- OML (Javed & White 2019): an RLN of six 3×3 convolutions (256 channels,
  strides 2, 1, 2, 1, 2, 2, ReLU, no normalisation) and a prediction
  network (PLN) of two Dense layers; the inner loop adapts the PLN only.

Each factory returns the model and documents the layer-name prefixes of its
inner-loop weights (`ANML_INNER`, `OML_INNER`), which
`asb_pretraining.inner_layers` takes.
"""

import math

import keras

import gin
from zapkeras import settings
from zapkeras.models import layers
from zapkeras.models.convnet import conv_blocks
from zapkeras.models.convnet import conv_init

ANML_INNER = ("rln_", "classifier")
OML_INNER = ("pln_", "classifier")
_ANML_SIZE = settings.OneOf(28, hint="anml supports 28 pixels.")
_OML_SIZE = settings.OneOf(84, hint="oml supports 84 pixels.")


@gin.configurable
@settings.declared("anml")
def anml(
    num_classes: settings.PositiveInt(example=964),
    *,
    image_size: _ANML_SIZE = 28,
    channels: settings.PositiveInt = 1,
    width: settings.PositiveInt = 256,
    nm_width: settings.PositiveInt = 112,
    init: layers.Init = "reference",
):
    """ANML at 28 px: RLN (3 blocks, `width`) gated by NM (3 blocks,
    `nm_width`, pooled to 1×1, Dense → sigmoid), then `classifier`.

    Layers: rln_* (RLN), nm_* (NM, its gate `nm_gate`), `features` (the
    gated features) and `classifier`; inner-loop prefixes `ANML_INNER`.
    """
    inputs = keras.Input((image_size, image_size, channels), name="images")
    rln = conv_blocks(
        inputs, width, (True, True, False), init=init, prefix="rln_"
    )
    nm = conv_blocks(
        inputs, nm_width, (True, True, True), init=init, prefix="nm_"
    )
    dim = rln.shape[-1]
    gate = layers.dense(dim, nm.shape[-1], init, "nm_gate", "sigmoid")(nm)
    features = keras.layers.Multiply(name="features")([rln, gate])
    outputs = layers.dense(num_classes, dim, init, "classifier")(features)
    return keras.Model(inputs, outputs, name="anml")


@gin.configurable
@settings.declared("oml")
def oml(
    num_classes: settings.PositiveInt(example=964),
    *,
    image_size: _OML_SIZE = 84,
    channels: settings.PositiveInt = 1,
    width: settings.PositiveInt = 256,
    hidden: settings.PositiveInt = 1024,
    init: layers.Init = "reference",
):
    """OML at 84 px: six 3×3 'valid' convs (strides 2,1,2,1,2,2; ReLU) →
    2304 features at width 256 → PLN Dense(`hidden`, ReLU) → classifier.

    Layers: rln_conv<i>, `features`, `pln_dense`, `classifier`;
    inner-loop prefixes `OML_INNER`.
    """
    inputs = keras.Input((image_size, image_size, channels), name="images")
    x = inputs
    for i, stride in enumerate((2, 1, 2, 1, 2, 2)):
        x = keras.layers.Conv2D(
            width,
            3,
            strides=stride,
            activation="relu",
            name=f"rln_conv{i}",
            **conv_init(init, x.shape[-1]),
        )(x)
    x = keras.layers.Flatten(name="features")(x)
    dim = math.prod(x.shape[1:])
    x = layers.dense(hidden, dim, init, "pln_dense", "relu")(x)
    outputs = layers.dense(num_classes, hidden, init, "classifier")(x)
    return keras.Model(inputs, outputs, name="oml")

"""The fully connected network of the continual problems.

hernandez-garcia2025 §3–4 (docs/reference_codes.md §2.3): `depth`
hidden Dense layers of `width` units with optional LayerNorm before
('pre') or after ('post') the activation, or the reparameterised LayerNorm
x̂·(1 + γ) + β before it ('reparam'); Kaiming-normal weights, zero biases.
activation="crelu" (the CReLU baseline of lee2024 and the SWR network) gives
each hidden Dense width/2 units whose CReLU output is `width` wide, as both
reference repos do; the next layer's fan-in is then twice the units before.
"""

import keras

import gin
from zapkeras import settings
from zapkeras.models import layers

LAYER_NORMS = (None, "pre", "post", "reparam")
_LAYER_NORM = settings.OneOf(
    *LAYER_NORMS, hint="use None, 'pre', 'post' or 'reparam'."
)


def _norm(layer_norm, name):
    """The normalisation layer of one hidden block."""
    if layer_norm == "reparam":
        return layers.ReparamLayerNorm(name=name)
    return keras.layers.LayerNormalization(epsilon=1e-5, name=name)


@gin.configurable
@settings.declared("mlp")
def mlp(
    num_classes: settings.PositiveInt(example=10),
    *,
    input_shape,
    width: settings.PositiveInt = 256,
    depth: settings.NonNegativeInt = 2,
    activation="relu",
    layer_norm: _LAYER_NORM = None,
    init: layers.Init = "reference",
):
    """Builds Flatten → depth × (Dense → [norm] → act → [norm]) → classifier.

    Hidden layers are named dense<i>, norm<i>, act<i>; the logits layer is
    `classifier`. `activation` is a Keras activation name or 'crelu' (then
    dense<i> has width/2 units, a pre-activation norm normalises those, and
    a post-activation norm the `width` CReLU outputs). init="reference"
    draws every kernel from Kaiming-normal (std √(2/fan_in)) with zero
    biases, as the reference code does; init="keras" keeps Keras' defaults
    (Glorot-uniform kernels).
    """
    hidden_units = layers.units_before(activation, width, "WIDTH")

    def dense(units, name):
        if init == "keras":
            return keras.layers.Dense(units, name=name)
        return keras.layers.Dense(
            units, kernel_initializer=layers.kaiming_normal(), name=name
        )

    inputs = keras.Input(tuple(input_shape), name="inputs")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i in range(depth):
        x = dense(hidden_units, f"dense{i}")(x)
        if layer_norm in ("pre", "reparam"):
            x = _norm(layer_norm, f"norm{i}")(x)
        x = layers.activation(activation, f"act{i}")(x)
        if layer_norm == "post":
            x = _norm(layer_norm, f"norm{i}")(x)
    outputs = dense(num_classes, "classifier")(x)
    return keras.Model(inputs, outputs, name="mlp")

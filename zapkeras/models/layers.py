"""Layers, activations and initializers shared by the zapkeras models.

The normalisations compute their statistics explicitly (mean, then mean of
squared deviations), with no `stop_gradient`: Keras' GroupNormalization and
BatchNormalization use `tf.nn.moments`, whose gradient is right to first
order only, which breaks Meta-ASB's second-order meta-gradient
(docs/keras_notes.md §7).
"""

import math

import keras
from keras import ops

from zapkeras import compile_options
from zapkeras import settings
from zapkeras import validate
from zapkeras.errors import UsageError

INITS = ("reference", "keras")
# The kind of every model's `init` setting.
Init = settings.OneOf(
    *INITS,
    hint="use 'reference' (the PyTorch init of the paper's code) or "
    "'keras' (Keras defaults).",
)


def standardize(x, axes, epsilon, scale):
    """(x - mean) / sqrt(var + epsilon) · scale over `axes`, twice
    differentiable. The per-channel `scale` multiplies the small
    1 / sqrt(var + epsilon) tensor, not x: one pass less over the
    activations (InstanceNorm's forward + backward ~16 % faster on the
    first block of the Omniglot convnet, issue 7). 16-bit inputs (a mixed
    policy) are standardised in float32 and returned in their dtype, as
    Keras' norms do: a 16-bit mean and variance lose small deviations."""
    dtype = x.dtype
    x = compile_options.full_precision(x)
    scale = ops.cast(scale, x.dtype)
    mean = ops.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    variance = ops.mean(ops.square(centered), axis=axes, keepdims=True)
    return ops.cast(centered * (ops.rsqrt(variance + epsilon) * scale), dtype)


@keras.saving.register_keras_serializable(package="zapkeras")
class InstanceNorm(keras.layers.Layer):
    """PyTorch's InstanceNorm2d(affine=True) for channels-last inputs.

    Each example and channel is standardised over its spatial axes (biased
    variance, eps 1e-5), then scaled by gamma (init 1) and shifted by beta
    (init 0) per channel: the norm of frati2024's small convnet
    (docs/reference_codes.md §1.5).
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                "InstanceNorm needs [batch, *spatial, channels] inputs; got "
                f"shape {input_shape}."
            )
        channels = (input_shape[-1],)
        self.gamma = self.add_weight(
            shape=channels, initializer="ones", name="gamma"
        )
        self.beta = self.add_weight(
            shape=channels, initializer="zeros", name="beta"
        )

    def call(self, inputs):
        axes = tuple(range(1, len(inputs.shape) - 1))
        return standardize(inputs, axes, self.epsilon, self.gamma) + self.beta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="zapkeras")
class ReparamLayerNorm(keras.layers.Layer):
    """Reparameterised LayerNorm x̂·(1 + γ) + β, γ = β = 0 at init.

    hernandez-garcia2025 §5 (eps 1e-6): the scale 1 + γ no longer shrinks
    towards 0 under weight decay and resets of γ, which starved gradients.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        features = (input_shape[-1],)
        self.gamma = self.add_weight(
            shape=features, initializer="zeros", name="gamma"
        )
        self.beta = self.add_weight(
            shape=features, initializer="zeros", name="beta"
        )

    def call(self, inputs):
        scale = 1.0 + self.gamma
        return standardize(inputs, -1, self.epsilon, scale) + self.beta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="zapkeras")
class CReLU(keras.layers.Layer):
    """Concatenated ReLU: [relu(x), relu(−x)] along the feature axis.

    Shang et al. (2016), the CReLU baseline of lee2024 §3.4 (Abbas et al.
    2023). The output has twice the input's features, so the next layer's
    fan-in is twice the units before it. lee2024 writes −relu(−x) for the
    second half; both reference repos (H&T `CReLU`, the SWR network)
    concatenate relu(−x), as here.
    """

    def call(self, inputs):
        return ops.concatenate([ops.relu(inputs), ops.relu(-inputs)], axis=-1)


def activation(kind, name):
    """The activation layer for `kind`: 'crelu' or a Keras activation."""
    if kind == "crelu":
        return CReLU(name=name)
    return keras.layers.Activation(kind, name=name)


def units_before(kind, width, setting):
    """Units of the layer feeding activation `kind` so that `width` come out.

    CReLU doubles its input, so a CReLU layer of width w is w/2 units (H&T's
    heads and the SWR network halve the layer, keeping the next fan-in at w:
    lee2024 "reducing the parameter count by half in each hidden layer").
    """
    width = validate.positive_int(width, setting, example=256)
    if kind != "crelu":
        return width
    if width % 2:
        raise UsageError(
            f"{setting} = {width} with CReLU; use an even width (the layer "
            "has width/2 units and CReLU doubles them)."
        )
    return width // 2


def kaiming_normal():
    """PyTorch's kaiming_normal_ (fan_in, gain √2): N(0, 2/fan_in)."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal"
    )


def torch_uniform(fan_in):
    """PyTorch's default Linear/Conv init of weights and biases.

    Kaiming-uniform with a = √5 gives U(±1/√fan_in) for both.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def torch_default(fan_in, use_bias=True):
    """Layer kwargs for PyTorch's default init of a Linear/Conv layer.

    A fresh initializer per tensor: Keras initializers repeat their draws
    (docs/keras_notes.md §3), so one object must not serve two.
    """
    kwargs = {"kernel_initializer": torch_uniform(fan_in)}
    if use_bias:
        kwargs["bias_initializer"] = torch_uniform(fan_in)
    return kwargs


def dense(units, fan_in, init, name, activation=None):
    """A Dense layer with PyTorch's default Linear init under 'reference'
    and Keras' defaults under 'keras'."""
    kwargs = torch_default(fan_in) if init == "reference" else {}
    return keras.layers.Dense(units, activation=activation, name=name, **kwargs)


def batch_norm(name):
    """BatchNorm with PyTorch's defaults: momentum 0.1 (Keras' 0.9 = 1 −
    0.1), eps 1e-5, over the global batch.

    Synchronised across replicas: Keras 3 keeps the moving statistics in
    variables with aggregation "none", which each replica updates from its
    own shard, so unsynchronised BN lets the replicas' copies (and the
    workers' results) drift apart. Global-batch statistics make N replicas
    compute what one device does with the same batch, as the papers'
    single-GPU code does.
    """
    return keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, synchronized=True, name=name
    )


def first_order_only(layer):
    """Whether `layer` is a Keras normalisation whose gradient is right to
    first order only: its statistics come from `tf.nn.moments`, which stops
    the mean's gradient inside the variance (docs/keras_notes.md §7).
    `batch_norm`'s synchronised BatchNormalization (E[x²] − E[x]², no stop)
    and LayerNormalization with `rms_scaling` are exact."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return not layer.synchronized
    if isinstance(layer, keras.layers.LayerNormalization):
        return not layer.rms_scaling
    return isinstance(layer, keras.layers.GroupNormalization)

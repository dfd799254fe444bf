"""Normalisation layers and initializers shared by the zapkeras models.

The normalisations compute their statistics explicitly (mean, then mean of
squared deviations), with no `stop_gradient`: Keras' GroupNormalization and
BatchNormalization use `tf.nn.moments`, whose gradient is right to first
order only, which breaks Meta-ASB's second-order meta-gradient
(ecosystem-notes.md §0 item 11).
"""

import math

import keras
from keras import ops

from zapkeras.errors import UsageError

INITS = ("reference", "keras")


def standardize(x, axes, epsilon):
    """(x - mean) / sqrt(var + epsilon) over `axes`, twice differentiable."""
    mean = ops.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    variance = ops.mean(ops.square(centered), axis=axes, keepdims=True)
    return centered * ops.rsqrt(variance + epsilon)


@keras.saving.register_keras_serializable(package="zapkeras")
class InstanceNorm(keras.layers.Layer):
    """PyTorch's InstanceNorm2d(affine=True) for channels-last inputs.

    Each example and channel is standardised over its spatial axes (biased
    variance, eps 1e-5), then scaled by gamma (init 1) and shifted by beta
    (init 0) per channel: the norm of frati2024's small convnet
    (reference-implementations.md §1.5).
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
        return standardize(inputs, axes, self.epsilon) * self.gamma + self.beta

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
        normalized = standardize(inputs, -1, self.epsilon)
        return normalized * (1.0 + self.gamma) + self.beta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def check_init(init, setting):
    """Raises UsageError unless `init` is one of INITS."""
    if init not in INITS:
        raise UsageError(
            f"{setting} = {init!r}; use 'reference' (the PyTorch init of "
            "the paper's code) or 'keras' (Keras defaults)."
        )


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

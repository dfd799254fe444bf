"""The initial distribution of each weight tensor, to resample from it.

SWR resamples a reinitialised weight "from the same distribution used at
initialization" (hernandez-garcia2025 §3, Alg. 1); ReDo draws a dormant
unit's incoming weights from the layer's initializer (Sokar et al. §4) and
CBP resets normalisation entries to their initial values. The reference
code keeps a hand-written table per network (docs/reference_codes.md
§2.1); here the table is read off each variable's layer: a variable named
`v` of a layer was drawn by the layer's `v_initializer` (Keras' own
convention: kernel, bias, gamma, beta, moving_mean, moving_variance,
embeddings). The zapkeras norms keep no initializer attribute and are
listed here. Keras initializers repeat their draws (docs/keras_notes.md §3),
so `sample` draws with a `keras.random.SeedGenerator`.
"""

import collections
import math

import keras

from zapkeras import compat
from zapkeras.errors import UsageError
from zapkeras.models.layers import InstanceNorm
from zapkeras.models.layers import ReparamLayerNorm

KINDS = ("normal", "truncated_normal", "uniform", "constant")

Distribution = collections.namedtuple("Distribution", "kind mean scale")
Distribution.__doc__ = """How a tensor was initialised.

kind: one of KINDS; mean: the centre; scale: the std of the (untruncated)
normal, the half-width of the uniform, or 0 for a constant. A truncated
normal is cut at 2 scales, as Keras' TruncatedNormal.
"""

# Norm layers that create their weights from initializer strings.
_FIXED = {
    ReparamLayerNorm: {"gamma": 0.0, "beta": 0.0},
    InstanceNorm: {"gamma": 1.0, "beta": 0.0},
}


def _from_initializer(initializer, shape):
    """The Distribution of `initializer` for a tensor of `shape`, or None."""
    inits = keras.initializers
    if isinstance(initializer, inits.Zeros):
        return Distribution("constant", 0.0, 0.0)
    if isinstance(initializer, inits.Ones):
        return Distribution("constant", 1.0, 0.0)
    if isinstance(initializer, inits.Constant):
        if isinstance(initializer.value, (int, float)):
            return Distribution("constant", float(initializer.value), 0.0)
        return None
    if isinstance(initializer, inits.RandomNormal):
        return Distribution("normal", initializer.mean, initializer.stddev)
    if isinstance(initializer, inits.TruncatedNormal):
        return Distribution(
            "truncated_normal", initializer.mean, initializer.stddev
        )
    if isinstance(initializer, inits.RandomUniform):
        low, high = initializer.minval, initializer.maxval
        return Distribution("uniform", (low + high) / 2, (high - low) / 2)
    if isinstance(initializer, inits.VarianceScaling):
        fan_in, fan_out = compat.compute_fans(
            shape, initializer.input_axes, initializer.output_axes
        )
        fan = {
            "fan_in": fan_in,
            "fan_out": fan_out,
            "fan_avg": (fan_in + fan_out) / 2,
        }[initializer.mode]
        variance = initializer.scale / max(1.0, fan)
        if initializer.distribution == "uniform":
            return Distribution("uniform", 0.0, math.sqrt(3.0 * variance))
        if initializer.distribution == "truncated_normal":
            std = math.sqrt(variance) / 0.87962566103423978
            return Distribution("truncated_normal", 0.0, std)
        return Distribution("normal", 0.0, math.sqrt(variance))
    return None


def _layers_by_path(model):
    return {layer.path: layer for layer in compat.flatten_layers(model)}


def _check_override(path, value, setting):
    try:
        kind, mean, scale = value
        valid = kind in KINDS and float(scale) >= 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise UsageError(
            f"{setting}[{path!r}] = {value!r}; give (kind, mean, scale) with "
            f"kind one of {', '.join(KINDS)} and scale ≥ 0 (std, uniform "
            "half-width, or 0 for a constant)."
        )
    return Distribution(kind, float(mean), float(scale))


def distributions(model, variables, overrides=None, setting="init"):
    """{variable.path: Distribution} for `variables` of `model`.

    `overrides` ({path: (kind, mean, scale)}) wins over what the layers
    say. Raises UsageError, naming `setting`, for a path in `overrides` that
    is not among `variables` or for a variable whose initializer is not
    understood (Orthogonal, Identity, a custom one): pass it in `overrides`.
    """
    overrides = dict(overrides or {})
    paths = {v.path for v in variables}
    unknown = sorted(set(overrides) - paths)
    if unknown:
        raise UsageError(
            f"{setting} names {unknown}, which are not variables being "
            f"reset; use paths from model.trainable_variables, e.g. "
            f"{sorted(paths)[:3]}."
        )
    layers = _layers_by_path(model)
    result = {}
    for variable in variables:
        path = variable.path
        if path in overrides:
            result[path] = _check_override(path, overrides[path], setting)
            continue
        layer = layers.get(path.rpartition("/")[0])
        result[path] = _of_layer_variable(layer, variable)
        if result[path] is None:
            initializer = getattr(layer, f"{variable.name}_initializer", None)
            raise UsageError(
                f"{setting}: cannot tell the initial distribution of "
                f"{path!r} (layer {type(layer).__name__}, initializer "
                f"{type(initializer).__name__}); pass {setting}={{{path!r}: "
                "(kind, mean, scale)}, kind one of " + ", ".join(KINDS) + "."
            )
    return result


def _of_layer_variable(layer, variable):
    for kind, fixed in _FIXED.items():
        if isinstance(layer, kind) and variable.name in fixed:
            return Distribution("constant", fixed[variable.name], 0.0)
    initializer = getattr(layer, f"{variable.name}_initializer", None)
    if initializer is None:
        return None
    return _from_initializer(initializer, tuple(variable.shape))


def of_variable(model, variable, setting="init"):
    """The Distribution `variable` of `model` was initialised from."""
    return distributions(model, [variable], setting=setting)[variable.path]


def sample(distribution, shape, dtype, seed):
    """Fresh draws of `shape` from `distribution` (seed: a SeedGenerator)."""
    kind, mean, scale = distribution
    if kind == "constant" or scale == 0:
        return keras.ops.full(shape, mean, dtype=dtype)
    if kind == "uniform":
        return keras.random.uniform(
            shape, mean - scale, mean + scale, dtype=dtype, seed=seed
        )
    draw = (
        keras.random.normal
        if kind == "normal"
        else (keras.random.truncated_normal)
    )
    return draw(shape, mean=mean, stddev=scale, dtype=dtype, seed=seed)

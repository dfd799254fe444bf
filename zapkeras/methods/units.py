"""Hidden units of a Keras model: where they are and how to reset them.

CBP and ReDo act on units (hernandez-garcia2025 §4–5;
docs/reference_codes.md §4–5): a unit is a Dense column or a conv output
channel of a hidden weighted layer. Its incoming weights are that column
(and its bias entry), its activation is the post-activation output, and its
outgoing weights are the rows of the next weighted layer that read it: a
Dense kernel row, a conv kernel input channel, or, after a channels-last
conv → Flatten → Dense, every row r with r % channels == unit (the mask
repeated over spatial positions, as ReDo does).

`unit_layers` finds these in a functional or Sequential model. Supported:
chains in which a hidden Dense/Conv1D/2D/3D (not `classifier`, not a model
output) reaches exactly one next Dense/Conv layer through layers that keep
the unit (channel) axis last and never mix units: activations, dropout and
noise, pooling, padding, Flatten, and norms whose weights are per unit
(LayerNormalization/BatchNormalization over the last axis, InstanceNorm,
ReparamLayerNorm). Residual networks work for the layers inside a block: a
layer whose output feeds several layers or a merge (Add, Concatenate) has
no unambiguous outgoing weights and is excluded, as the reference CBP
excludes ResNet's downsample convs (docs/reference_codes.md §4.3).
Subclassed models, nested models, shared layers, channels-first layouts and
grouped or transposed convolutions are not supported.
"""

import dataclasses

import keras
import tensorflow as tf

from zapkeras import compat
from zapkeras.errors import UsageError
from zapkeras.methods import inits
from zapkeras.methods import resets
from zapkeras.models.layers import InstanceNorm
from zapkeras.models.layers import ReparamLayerNorm

L = keras.layers
WEIGHTED = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D)
ACTIVATIONS = (L.Activation, L.ReLU, L.LeakyReLU, L.ELU)
NORMS = (L.LayerNormalization, L.BatchNormalization, InstanceNorm)
NORMS += (ReparamLayerNorm,)
_PASS = ACTIVATIONS + (
    L.Dropout,  # and SpatialDropout*
    L.GaussianNoise,
    L.GaussianDropout,
    L.AlphaDropout,
    L.Identity,
    L.Flatten,
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.ZeroPadding3D,
)


@dataclasses.dataclass(frozen=True)
class UnitLayer:
    """A hidden layer whose units can be reset.

    layer: the Dense/Conv layer (units = last kernel axis); output: the
    layer whose output is the units' activation (the last activation
    layer on the path, else `layer`); norms: per-unit norm layers on the
    path; next: the weighted layer holding the outgoing weights; read:
    the layer whose output `next` reads (after any pooling, Flatten or
    norm on the path; `layer` itself when nothing is in between).
    """

    layer: keras.layers.Layer
    output: keras.layers.Layer
    norms: tuple
    next: keras.layers.Layer
    read: keras.layers.Layer = None

    @property
    def name(self):
        return self.layer.name

    @property
    def num_units(self):
        return int(self.layer.kernel.shape[-1])


def _graph(model):
    """(functional, {id(tensor): consuming nodes}) of a built model."""
    functional = compat.functional(model)
    if functional is None:
        raise UsageError(
            f"model {model.name!r} is not a built functional or Sequential "
            "model; unit resets need its layer graph: build it from "
            "keras.Input (or give the Sequential an Input / call build)."
        )
    consumers = {}
    for node in compat.nodes(functional):
        for tensor in node.input_tensors:
            consumers.setdefault(id(tensor), []).append(node)
    return functional, consumers


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _passes(layer):
    """Whether `layer` keeps each unit on its own on the last axis."""
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    return (
        isinstance(layer, _PASS)
        and _channels_last(layer)
        and activation not in ("softmax", "log_softmax")
    )


def _per_unit_norm(norm, num_units):
    axis = getattr(norm, "axis", -1)
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    rank = len(norm.input.shape)
    return all(a in (-1, rank - 1) for a in axes) and all(
        tuple(v.shape) == (num_units,) for v in norm.weights
    )


def _follow(layer, functional, consumers):
    """The UnitLayer of `layer`, or the reason it has none."""
    if len(compat.inbound_nodes(layer)) != 1:
        return "it is called more than once (a shared layer)"
    if not _channels_last(layer) or getattr(layer, "groups", 1) != 1:
        return "it is channels-first or grouped"
    num_units = int(layer.kernel.shape[-1])
    outputs = {id(t) for t in compat.flat_outputs(functional)}
    output, norms, current = layer, [], layer
    while True:
        read = current
        tensor = compat.inbound_nodes(current)[0].output_tensors[0]
        if id(tensor) in outputs:
            return f"its output reaches the model output at {current.name!r}"
        following = consumers.get(id(tensor), [])
        if len(following) != 1:
            return f"the output of {current.name!r} feeds several layers"
        current = following[0].operation
        if isinstance(current, WEIGHTED):
            break
        if len(compat.inbound_nodes(current)) != 1:
            return f"{current.name!r} is a shared layer"
        if isinstance(current, NORMS):
            if not _per_unit_norm(current, num_units):
                return f"norm {current.name!r} does not act per unit"
            norms.append(current)
        elif not _passes(current):
            return (
                f"its path reaches {current.name!r} "
                f"({type(current).__name__}), which mixes or moves units"
            )
        if isinstance(current, ACTIVATIONS):
            output = current
    kernel = current.kernel.shape
    fits = kernel[-2] == num_units and getattr(current, "groups", 1) == 1
    if isinstance(current, L.Dense):
        fits = kernel[0] % num_units == 0
    if not fits or not _channels_last(current):
        return f"next layer {current.name!r} does not read its units"
    return UnitLayer(layer, output, tuple(norms), current, read)


def unit_layers(model, names=None, setting="layers"):
    """The hidden unit layers of `model`, in graph order.

    names=None finds every supported hidden Dense/Conv layer except
    `classifier`; a list of layer names asks for those, and a named layer
    that is unsupported raises UsageError (naming `setting`) with the
    reason. UsageError too when nothing is found.
    """
    functional, consumers = _graph(model)
    found, excluded = [], {}
    for layer in functional.layers:
        if not isinstance(layer, WEIGHTED) or layer.name == "classifier":
            continue
        unit = _follow(layer, functional, consumers)
        if isinstance(unit, UnitLayer):
            found.append(unit)
        else:
            excluded[layer.name] = unit
    if names is None:
        if not found:
            raise UsageError(
                f"{setting}: model {model.name!r} has no hidden Dense/Conv "
                f"layer with one clear next layer (excluded: {excluded}); "
                "see zapkeras.methods.units for the supported topologies."
            )
        return found
    by_name = {unit.name: unit for unit in found}
    chosen = []
    for name in names:
        if name not in by_name:
            why = excluded.get(name, "it is not a hidden Dense/Conv layer")
            raise UsageError(
                f"{setting} = {list(names)!r}: {name!r} cannot be used "
                f"because {why}; choose among {sorted(by_name)}."
            )
        chosen.append(by_name[name])
    return chosen


def unit_axes(tensor):
    """All axes but the last: what a per-unit statistic reduces over."""
    return list(range(len(tensor.shape) - 1))


def outgoing_view(kernel, num_units):
    """The next layer's kernel as [positions, num_units, outputs]."""
    kernel = tf.convert_to_tensor(kernel)
    return tf.reshape(kernel, [-1, num_units, kernel.shape[-1]])


def outgoing_mask(kernel, unit_mask):
    """Boolean mask of the next kernel's entries read by the masked units."""
    num_units = unit_mask.shape[0]
    view = tf.broadcast_to(
        tf.reshape(unit_mask, [1, num_units, 1]),
        outgoing_view(kernel, num_units).shape,
    )
    return tf.reshape(view, kernel.shape)


def reset(unit, mask, incoming, *, optimizer=None, norms=False, shift=None):
    """Resets the masked units of `unit` (cross-replica context).

    Incoming kernel columns ← `incoming` (a kernel-shaped tensor; only the
    masked columns are used), incoming bias entries ← 0, outgoing weights
    ← 0; `shift` (if given) is added to the next layer's bias first;
    `norms`: also put the norm entries of these units back to their
    initial constants (γ 1 / reparam γ 0, β 0, BN mean 0, var 1);
    `optimizer`: zero its slots (e.g. Adam m, v) of the reset incoming
    kernel and bias entries and outgoing weights.
    """
    mask = tf.convert_to_tensor(mask)
    kernel, bias = unit.layer.kernel, unit.layer.bias
    out_kernel = unit.next.kernel
    out_mask = outgoing_mask(out_kernel, mask)
    if shift is not None and unit.next.bias is not None:
        unit.next.bias.assign_add(tf.cast(shift, unit.next.bias.dtype))
    resets.assign_units(kernel, mask, incoming)
    resets.assign_units(out_kernel, out_mask, tf.zeros([], out_kernel.dtype))
    changed = [(kernel, mask), (out_kernel, out_mask)]
    if bias is not None:
        resets.assign_units(bias, mask, tf.zeros([], bias.dtype))
        changed.append((bias, mask))
    for norm in unit.norms if norms else ():
        for variable in norm.weights:
            initial = inits.of_variable(norm, variable).mean
            resets.assign_units(variable, mask, initial)
    for variable, entries in changed if optimizer is not None else ():
        resets.reset_slots(optimizer, variable, entries)

"""Resetting some units of a layer: what every reset method shares.

A unit is one index of the last axis of a kernel (a column of a Dense
kernel, an output channel of a conv kernel) and the matching bias entry.
Keras/TF variables have no usable scatter update under tf.distribute, so a
reset builds the full new tensor and `assign`s it through a boolean mask
over the unit axis (docs/keras_notes.md §2).

Resets must run in cross-replica context (a Callback hook, eager code, or a
tf.function outside `strategy.run`): there an `assign` writes the same value
to every replica. In replica context (inside `train_step`) each replica
would write its own value and the mirrors would silently drift apart
(docs/keras_notes.md §1), so `in_cross_replica_context` hops out through
`merge_call`.
"""

import numpy as np
import tensorflow as tf

from zapkeras import compat
from zapkeras.errors import UsageError


def resolve_units(units, num_units, setting="units"):
    """Validated indices of the units to reset, out of `num_units`.

    `units` may be None (every unit), an int, a list/array or a tensor of
    ints. Known values are checked here (UsageError naming `setting`) and
    returned as a sorted, duplicate-free int64 numpy array. A symbolic
    tensor (inside tf.function) is returned flattened as int32 with the
    range checked when the graph runs; its entries must be distinct.
    """
    if units is None:
        return np.arange(num_units)
    known = tf.get_static_value(units) if tf.is_tensor(units) else units
    if known is None:
        units = tf.reshape(tf.cast(units, tf.int32), [-1])
        message = f"{setting} must lie in [0, {num_units})"
        checks = [
            tf.debugging.assert_non_negative(units, message=message),
            tf.debugging.assert_less(units, num_units, message=message),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(units)
    array = np.asarray(known).reshape(-1)
    if array.size and array.dtype.kind not in "iu":
        raise UsageError(f"{setting} = {known!r}; give integer unit indices.")
    array = np.unique(array.astype(np.int64))
    if array.size and (array[0] < 0 or array[-1] >= num_units):
        raise UsageError(
            f"{setting} = {known!r} is out of range; this layer has "
            f"{num_units} units, so use indices 0..{num_units - 1}."
        )
    return array


def unit_mask(units, num_units):
    """Boolean [num_units] mask, True at `units` (broadcasts on unit axis)."""
    hits = tf.one_hot(units, num_units, on_value=True, off_value=False)
    return tf.reduce_any(tf.reshape(hits, [-1, num_units]), axis=0)


def spread_units(values, units, num_units):
    """Places `values[..., j]` at unit `units[j]` of a [..., num_units] tensor.

    Entries at other units are arbitrary (some column of `values`); combine
    the result with `assign_units`, which only writes the masked units.
    `values` must have at least one column.
    """
    position = tf.tensor_scatter_nd_update(
        tf.zeros([num_units], tf.int32),
        tf.reshape(tf.cast(units, tf.int32), [-1, 1]),
        tf.range(tf.size(units), dtype=tf.int32),
    )
    return tf.gather(values, position, axis=-1)


def assign_units(variable, mask, values):
    """variable[..., mask] = values[..., mask]; every other entry unchanged.

    A full-tensor `assign` through `tf.where`, so untouched entries stay
    bit-identical and MirroredVariables get one value on every replica.
    """
    current = tf.convert_to_tensor(variable)
    values = tf.cast(tf.broadcast_to(values, current.shape), current.dtype)
    variable.assign(tf.where(mask, values, current))


# The slots of a variable (Adam m and v, ...): see compat.
optimizer_slots = compat.optimizer_slots


def reset_slots(optimizer, variable, mask):
    """Zeroes the masked units of every optimizer slot of `variable`."""
    for slot in optimizer_slots(optimizer, variable):
        assign_units(slot, mask, tf.zeros([], slot.dtype))


def in_cross_replica_context(fn, *args):
    """Runs fn(*args) where assignments reach every replica alike.

    Called in replica context with several replicas, `fn` runs once via
    `merge_call` on the first replica's `args` (tensors; a replica's own
    values such as per-replica scores are ignored, so reduce them first).
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return fn(*args)

    def merged(strategy, *per_replica):
        first = [strategy.experimental_local_results(a)[0] for a in per_replica]
        return fn(*first)

    return context.merge_call(merged, args=args)

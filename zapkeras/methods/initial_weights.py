"""A model's initial weights, for methods that return to them.

lee2024's Shrink & Perturb and head reset interpolate toward, and
regenerative L2 decays toward, the ORIGINAL initial weights θ_0 — the same
values every time (docs/reference_codes.md §3.2). `snapshot` copies θ_0
into variables created under the model's strategy scope; a callback keeps
them on a `tf.Module` it exposes through `checkpoint_items()`. Restoring a
checkpoint into that module before the snapshot exists is deferred by
tf.train.Checkpoint until the variables are assigned to it, so a resumed
run gets the original θ_0 back, not the weights it resumed from.
"""

import keras
import tensorflow as tf

from zapkeras.errors import UsageError


def floating(variables):
    """The floating-point ones of `variables` (skips int counters)."""
    return [v for v in variables if tf.as_dtype(v.dtype).is_floating]


def snapshot(model, variables, initial_weights=None, owner="snapshot"):
    """Variables holding θ_0 of `variables` (all from `model.weights`).

    Args:
      model: the model; the copies are made under its strategy's scope.
      variables: the model variables to copy.
      initial_weights: None (copy the current values) or a list of arrays
        in `model.get_weights()` order, e.g. saved before training.
      owner: the setting named in error messages.
    """
    if initial_weights is None:
        values = [v.numpy() for v in variables]
    else:
        weights = model.weights
        if len(initial_weights) != len(weights):
            raise UsageError(
                f"{owner}.initial_weights has {len(initial_weights)} arrays "
                f"but model {model.name!r} has {len(weights)} weights; pass "
                "model.get_weights() taken before training."
            )
        by_id = {id(w): value for w, value in zip(weights, initial_weights)}
        values = [by_id[id(v)] for v in variables]
        for variable, value in zip(variables, values):
            if tuple(value.shape) != tuple(variable.shape):
                raise UsageError(
                    f"{owner}.initial_weights: {variable.path} has shape "
                    f"{tuple(variable.shape)}, the array {tuple(value.shape)}"
                    "; pass model.get_weights() of this model."
                )
    with model.distribute_strategy.scope():
        return [
            keras.Variable(
                value,
                dtype=variable.dtype,
                trainable=False,
                name=variable.path.replace("/", "_") + "_initial",
            )
            for variable, value in zip(variables, values)
        ]

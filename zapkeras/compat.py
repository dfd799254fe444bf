"""Every use of Keras internals, in one module, for the tested Keras versions.

zapkeras needs a few things Keras 3 keeps private: the pieces of its TF
`train_step` (so the step hook can run it with extra outputs), the layer
graph of a functional model (so unit methods find the outgoing weights of a
unit), the fan computation of its initializers, the names of optimizer
slots, the time-per-step estimate of its progress bar (for a count that
resumes), and fixes to its TF trainer: its build on a first batch that
splits unevenly over replicas, and two under MultiWorkerMirroredStrategy.
Nothing else in the package imports `keras.src` or reads a `_`-prefixed
Keras attribute (tests/test_compat.py checks both), so a Keras upgrade
means reviewing this file and extending `TESTED`.
"""

import functools
import warnings

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as _tf_trainer
from keras.src.initializers.random_initializers import compute_fans
from keras.src.losses.loss import unscale_loss_for_distribution

# Keras minor versions this module was checked against (setup.cfg pins).
TESTED = ("3.15",)

__all__ = [
    "compute_fans",
    "unscale_loss_for_distribution",
]


def keras_minor(version=None):
    """'3.15' of '3.15.1'."""
    return ".".join((version or keras.__version__).split(".")[:2])


def unsupported_reason(version=None):
    """Why this Keras version is not supported, or None if it is."""
    minor = keras_minor(version)
    if minor in TESTED:
        return None
    return (
        f"keras {version or keras.__version__} is installed, but zapkeras "
        f"uses Keras internals checked only on {', '.join(TESTED)}.x "
        "(zapkeras/compat.py); install a tested version, e.g. "
        f"pip install 'keras~={TESTED[-1]}.0'."
    )


def missing_internals():
    """The Keras internals this module uses that this Keras lacks."""
    probes = {
        "Model._compute_loss": hasattr(keras.Model, "_compute_loss"),
        "TensorFlowTrainer._maybe_symbolic_build": hasattr(
            _tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build"
        ),
        "Trainer._symbolic_build": hasattr(keras.Model, "_symbolic_build"),
        "trainer.reduce_per_replica": hasattr(
            _tf_trainer, "reduce_per_replica"
        ),
        "trainer._collective_all_reduce_multi_worker": hasattr(
            _tf_trainer, "_collective_all_reduce_multi_worker"
        ),
        "Layer._flatten_layers": hasattr(keras.layers.Layer, "_flatten_layers"),
        "Progbar._estimate_step_duration": hasattr(
            keras.utils.Progbar, "_estimate_step_duration"
        ),
        "Progbar._dynamic_display": hasattr(
            keras.utils.Progbar(1, verbose=0), "_dynamic_display"
        ),
    }
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    probes.update(
        {
            "Functional._nodes_by_depth": hasattr(model, "_nodes_by_depth"),
            "Functional._outputs": hasattr(model, "_outputs"),
            "Functional._outputs_struct": hasattr(model, "_outputs_struct"),
            "Layer._inbound_nodes": hasattr(model.layers[1], "_inbound_nodes"),
            "Model._call_has_training_arg": hasattr(
                model, "_call_has_training_arg"
            ),
            "Model._loss_tracker": hasattr(model, "_loss_tracker"),
        }
    )
    return sorted(name for name, present in probes.items() if not present)


def warn_if_unsupported(version=None):
    """Warns (once per call) when this Keras version was never tested."""
    reason = unsupported_reason(version)
    if reason:
        warnings.warn(reason, stacklevel=2)


# The TF train step, piece by piece (keras/src/backend/tensorflow/trainer.py).


def call_for_training(model, x):
    """model(x) as Keras' train_step calls it (training=True if accepted)."""
    if model._call_has_training_arg:
        return model(x, training=True)
    return model(x)


def compute_loss(model, x, y, y_pred, sample_weight):
    """The compiled loss of Keras' train_step (scaled for replicas)."""
    return model._compute_loss(
        x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
    )


def track_loss(model, loss, batch_size):
    """Updates the `loss` metric as Keras' train_step does."""
    model._loss_tracker.update_state(
        unscale_loss_for_distribution(loss), sample_weight=batch_size
    )


# The progress bar of zapkeras.outputs.console.


class Progbar(keras.utils.Progbar):
    """keras.utils.Progbar for a count resumed at `start`: the time per
    unit, hence the ETA, counts only the units done since the bar was made
    (Keras' counts them from 0). It always redraws in place (the caller
    has checked for a terminal)."""

    def __init__(self, target, start=0, **kwargs):
        super().__init__(target, **kwargs)
        self.start = start
        self._dynamic_display = True

    def _estimate_step_duration(self, current, now):
        return super()._estimate_step_duration(current - self.start, now)


# The layer graph of functional (and Sequential) models.


def functional(model):
    """The functional graph of a functional or Sequential model, or None."""
    graph = getattr(model, "_functional", None) or model
    return graph if hasattr(graph, "_nodes_by_depth") else None


def output_structure(model):
    """The (nested) output tensors of a functional model."""
    return functional(model)._outputs_struct


def flat_outputs(model):
    """The output tensors of a functional model, flattened."""
    return functional(model)._outputs


def nodes(model):
    """Every node of a functional model's graph."""
    return [n for ns in functional(model)._nodes_by_depth.values() for n in ns]


def inbound_nodes(layer):
    """The nodes at which `layer` was called."""
    return layer._inbound_nodes


def flatten_layers(model, include_self=True):
    """`model` and every layer nested in it, depth first."""
    return list(model._flatten_layers(include_self=include_self))


def optimizer_slots(optimizer, variable):
    """The slot variables (e.g. Adam momentum, velocity) of `variable`.

    Keras 3 has no `get_slot`; `add_variable_from_reference` names a slot
    f"{variable.path.replace('/', '_')}_{slot}", so slots are matched by
    that prefix and by shape. Empty until the optimizer is built. EMA
    averages (`use_ema`) match too.
    """
    prefix = variable.path.replace("/", "_") + "_"
    return [
        slot
        for slot in optimizer.variables
        if slot.name.startswith(prefix) and slot.shape == variable.shape
    ]


def _local_build(self, iterator=None, data_batch=None):
    """Keras' build before fit/evaluate, from the local first replica's
    share of the first batch instead of its mean over the replicas, which
    fails when shares differ in size (e.g. 5 examples on 2 replicas) or
    the strategy cannot reduce a PerReplica tuple. Shapes are all the
    build needs."""
    if self._distribute_strategy is None:
        return
    if iterator is not None:
        for _, _, batches in iterator:
            local = self.distribute_strategy.experimental_local_results
            data_batch = tf.nest.map_structure(
                lambda v: local(v)[0], next(batches)
            )
            break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


class LocalBatchBuild:
    """Mixin of Keras models: `_local_build` for this class only, so that
    `evaluate` under MirroredStrategy takes batches that split unevenly."""

    _maybe_symbolic_build = _local_build


@functools.cache
def patch_multi_worker_trainer():
    """Two fixes to Keras' TF trainer under MultiWorkerMirroredStrategy.

    keras-team/keras#20585 (open): `fit` builds the model by averaging the
    first distributed batch with `strategy.reduce`, which the collective
    strategy cannot do on a PerReplica tuple; and it averages every scalar
    log with `strategy.reduce(..., axis=0)`, which has no axis 0. The build
    now uses the local replica's batch (its shapes are all it needs) and
    scalars are averaged over replicas with `axis=None`; everything else,
    every gradient all-reduce included, is Keras' and tf.distribute's own.
    """
    reduce_per_replica = _tf_trainer.reduce_per_replica
    multi_worker = _tf_trainer._collective_all_reduce_multi_worker

    def reduce_logs(values, strategy, reduction):
        if not multi_worker(strategy) or reduction not in ("auto", "mean"):
            return reduce_per_replica(values, strategy, reduction)

        def mean(value):
            if value.shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return reduce_per_replica(value, strategy, reduction)

        return tf.nest.map_structure(mean, values)

    _tf_trainer.reduce_per_replica = reduce_logs
    _tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _local_build

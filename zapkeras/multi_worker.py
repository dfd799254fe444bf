"""`--strategy=multi_worker`: MultiWorkerMirroredStrategy from TF_CONFIG.

Keras 3's TensorFlow trainer has two bugs under MultiWorkerMirroredStrategy
(keras-team/keras#20585, open): `fit` builds the model by averaging the
first distributed batch with `strategy.reduce`, which the collective
strategy cannot do on a batch that is one PerReplica of a tuple; and it
averages every scalar log with `strategy.reduce(..., axis=0)`, which has no
axis 0. `patch_keras()` replaces exactly those two steps: the build uses the
local replica's batch (its shapes are all the build needs) and scalars are
averaged over replicas with `axis=None`. Everything else, including every
gradient all-reduce, is Keras' and tf.distribute's own.

Every worker runs the same program with the same seed, so every reset that
zapkeras does in cross-replica context draws the same values on every
worker. Each worker writes a complete output directory: the chief at
`--output_dir`, worker i at `--output_dir/workers/i` (checkpoints must be
written by every worker; resuming reads each worker's own).
"""

import functools
import json
import os

import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer

from zapkeras.errors import UsageError


def strategy():
    """A MultiWorkerMirroredStrategy for the cluster in $TF_CONFIG."""
    config = os.environ.get("TF_CONFIG")
    try:
        cluster = json.loads(config or "")["cluster"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            "--strategy=multi_worker needs $TF_CONFIG with a 'cluster' and "
            "a 'task' (https://www.tensorflow.org/guide/distributed_training"
            "#setting_up_the_tf_config_environment_variable); set it on "
            "every worker, or use --strategy=mirrored on one machine."
        ) from None
    if not cluster.get("worker") and not cluster.get("chief"):
        raise UsageError(
            "$TF_CONFIG['cluster'] lists no 'worker' or 'chief' addresses; "
            "list every worker's host:port."
        )
    patch_keras()
    return tf.distribute.MultiWorkerMirroredStrategy()


def output_dir(strategy, path):
    """Where this worker writes: `path` on the chief, else a subfolder."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or _is_chief(resolver):
        return path
    return os.path.join(path, "workers", str(resolver.task_id))


def _is_chief(resolver):
    if resolver.task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and not (has_chief)
    )


@functools.cache
def patch_keras():
    """Applies the two fixes described in the module docstring, once."""
    reduce_per_replica = tf_trainer.reduce_per_replica

    def reduce_logs(values, strategy, reduction):
        if not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return reduce_per_replica(values, strategy, reduction)
        if reduction not in ("auto", "mean"):
            return reduce_per_replica(values, strategy, reduction)

        def mean(value):
            if value.shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return reduce_per_replica(value, strategy, reduction)

        return tf.nest.map_structure(mean, values)

    def symbolic_build(self, iterator=None, data_batch=None):
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

    tf_trainer.reduce_per_replica = reduce_logs
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = symbolic_build

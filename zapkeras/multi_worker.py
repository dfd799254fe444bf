"""`--strategy=multi_worker`: MultiWorkerMirroredStrategy from TF_CONFIG.

Keras 3's TensorFlow trainer has two bugs under MultiWorkerMirroredStrategy
(keras-team/keras#20585, open), mended by
`compat.patch_multi_worker_trainer` before the strategy is made.

Every worker runs the same program with the same seed, so every reset that
zapkeras does in cross-replica context draws the same values on every
worker. Each worker writes a complete output directory: the chief at
`--output_dir`, worker i at `--output_dir/workers/i` (checkpoints must be
written by every worker; resuming reads each worker's own).
"""

import json
import os

import tensorflow as tf

from zapkeras import compat
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
    compat.patch_multi_worker_trainer()
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
